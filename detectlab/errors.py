"""Errors a user can act on.

Every error raised for bad input (config, CLI flags, data files, weights) derives from
:class:`DetectlabError`. Command-line tools catch it and print its message as one line,
so messages name the file / field / flag and say why, without a traceback.
"""


class DetectlabError(Exception):
    """Base class: an error caused by the user's input, reported in one line."""


class ConfigError(DetectlabError, ValueError):
    """A recipe, a `--set` override or a CLI flag is invalid."""


class DataError(DetectlabError, ValueError):
    """A dataset file, image or annotation is invalid."""


class WeightsError(DetectlabError, ValueError):
    """A weights file cannot be loaded into the model."""


class TrainingError(DetectlabError, RuntimeError):
    """Training had to stop (for example, a loss became non-finite)."""


class ExportError(DetectlabError, RuntimeError):
    """An exported model cannot be written or does not reproduce the Keras model."""


class ClusterError(TrainingError):
    """A multi-worker run lost (or never reached) one of its workers; the message names it."""
