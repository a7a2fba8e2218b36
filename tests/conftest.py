"""Shared fixtures. Tests build tiny models (narrow widths, 64 px) through the same code
paths as the real recipes; heavier tests are marked ``slow``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTANT = ROOT / "models" / "instant"
sys.path.insert(0, str(ROOT))

import detectlab  # noqa: E402,F401  (quiet TensorFlow import, registrations)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}

# real files published by others, beside the clone (see ../shared/README.md); CI has them
SHARED = Path(os.environ.get("DETECTLAB_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """``../shared/<parts>``, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (real published files beside the clone; set DETECTLAB_SHARED to their folder)")
    return path


def tool(name, *args, timeout=300) -> subprocess.CompletedProcess:
    """Run ``tools/NAME`` (or any script under the repository) as a user would."""
    return subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A small shapes dataset (48 train / 16 val images of 64 px), written once."""
    from detectlab.data.shapes import write_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, train=48, val=16, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, shapes_dir):
    """Four epochs of the instant YOLOv3-tiny through the runner (shared, read-only)."""
    from detectlab.config import load_config
    from detectlab.training.runner import train

    workdir = tmp_path_factory.mktemp("run")
    (workdir / "shapes").symlink_to(shapes_dir)
    return train(load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.epochs=4", "train.lr=0.01"]), workdir)


@pytest.fixture
def tiny_cfg():
    """The instant YOLOv3-tiny recipe as a Config (callers override with `--set` strings)."""
    from detectlab.config import load_config

    def make(*overrides: str, recipe: str = "yolov3_tiny_instant.yaml"):
        return load_config(INSTANT / recipe, list(overrides))

    return make


@pytest.fixture
def detectlab_log(caplog):
    """``caplog`` holding the ``detectlab`` logger's records, each once (the tools' own
    stderr handler is not installed while this is in use)."""
    import logging

    logger = logging.getLogger("detectlab")
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [caplog.handler], False
    caplog.set_level(logging.INFO, logger="detectlab")
    yield caplog
    logger.handlers, logger.propagate = handlers, propagate


@pytest.fixture(autouse=True)
def _float32_policy():
    """Each test starts (and ends) with the float32 policy."""
    import keras

    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")
