"""Shared command-line plumbing for ``tools/*.py``: one-line errors, config from flags."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

from detectlab._quiet import filtered_native_stderr
from detectlab.config import Config, load_config
from detectlab.errors import ConfigError, DetectlabError
from detectlab.utils import setup_logging


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming it (no usage dump)."""

    def __init__(self, *args, **kwargs):
        if sys.argv and sys.argv[0].startswith("detectlab "):  # run as `detectlab COMMAND`: say so in usage
            kwargs["prog"] = sys.argv[0]
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run(main: Callable[[], int | None]) -> None:
    """Run a tool's ``main``; user errors become one line on stderr and exit code 1 or 2."""
    setup_logging()
    try:
        with filtered_native_stderr():
            code = main() or 0
    except ConfigError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        code = 2
    except DetectlabError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # errors raised in data workers arrive wrapped by tf.data
        message = user_error_in(exc) or system_error_in(exc)
        if message is None:
            if _joined_cluster():
                import traceback

                traceback.print_exc()
                _leave_cluster(1)
            raise
        print(f"error: {one_line(message)}", file=sys.stderr)
        code = 1
    _leave_cluster(code)
    sys.exit(code)


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(message: str) -> str:
    """``message`` on one line: line breaks (e.g. inside a file name from a data file) escaped."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in message)


def system_error_in(exc: BaseException) -> str | None:
    """One line for what the machine refused: a file that cannot be read or written (named),
    or memory that ran out; None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, OSError) and (exc.filename is not None or exc.strerror):
        names = " -> ".join(str(f) for f in (exc.filename, getattr(exc, "filename2", None)) if f is not None)
        return f"{names}: {exc.strerror or exc}" if names else str(exc.strerror)
    out_of_memory = isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError" or (
        type(exc).__name__ == "error" and "Insufficient memory" in str(exc))  # cv2.error
    if out_of_memory:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "MemoryError"
        return f"out of memory ({detail}); try a smaller --image-size / --batch-size or fewer images"
    return None


def _joined_cluster() -> bool:
    devices = sys.modules.get("detectlab.training.devices")  # only loaded by tools that train
    return devices is not None and devices._CLUSTER_JOINED


def _leave_cluster(code: int) -> None:
    """A process of a multi-worker run ends at once (TensorFlow's teardown could hang)."""
    if _joined_cluster():
        sys.modules["detectlab.training.devices"].leave_cluster(code)


_WRAPPED = re.compile(r"(?:DataError|ConfigError|WeightsError|DetectlabError|TrainingError): ([^\n]+)")


def user_error_in(exc: BaseException) -> str | None:
    """The first detectlab error message inside a wrapped exception (tf.data, workers)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DetectlabError):
            return str(exc)
        match = _WRAPPED.search(str(exc))
        if match:
            return match.group(1).strip()
        exc = exc.__cause__ or exc.__context__
    return None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="recipe YAML (models/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe value, e.g. --set train.lr=0.01 (repeatable)")


def load_cli_config(config: str | None, overrides: list[str], fallback: Path | None = None) -> Config:
    """The recipe from ``--config``, else ``fallback`` (a run's ``config.yaml``)."""
    path = config or (str(fallback) if fallback is not None and fallback.is_file() else None)
    if path is None:
        raise ConfigError("--config is required (a recipe from models/, or a run folder's config.yaml)")
    return load_config(path, overrides)


def other_dataset_overrides(recipe_data, data: str | None, images: str | None = None, val: str | None = None,
                            val_images: str | None = None) -> list[str]:
    """``--set`` items for ``--data`` / ``--val`` naming another dataset than the recipe's
    (``recipe_data``, its ``data`` section): the recipe's image folders, splits and class list
    describe its own dataset and are left out (images are then found where the file says, or
    in ``--images`` / ``--val-images``)."""
    def same(given, recipe) -> bool:
        return recipe is not None and Path(given).resolve() == Path(recipe).resolve()

    out = []
    if data is not None and data != "shapes" and not same(data, recipe_data.train):
        out += ([] if images is not None else ["data.images=null"]) + ["data.train_split=null", "data.classes=null"]
    if val is not None and val.lower() not in ("none", "shapes") and not same(val, recipe_data.val):
        out += ([] if val_images is not None else ["data.val_images=null"]) + ["data.val_split=null"]
    return out


def run_config_for(weights: str | None) -> Path | None:
    """``config.yaml`` of the run a checkpoint belongs to (``RUN/checkpoints/x.keras``)."""
    if not weights:
        return None
    path = Path(weights).resolve()
    for parent in (path.parent, path.parent.parent):
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
    return None


def _number(cast, accept, expected: str):
    """An argparse ``type`` that parses with ``cast`` and checks ``accept``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
