"""The argument parser of the dataset programs, importable without detectlab (so without
TensorFlow): ``--help`` and flag errors answer at once."""

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """A bad flag is one line naming it (as ``detectlab.cli.ArgumentParser``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
