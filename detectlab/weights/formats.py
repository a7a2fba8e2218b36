"""``load_weights``: one entry point for every weights file a user brings, by file type.

- ``.keras``: our checkpoints, by layer name (:mod:`detectlab.weights.by_name`);
- ``.h5`` / ``.hdf5``: the classic Keras by-name layout (:mod:`detectlab.weights.by_name`);
- ``.weights``: Darknet files, by layer order (:mod:`detectlab.weights.darknet`).
"""

from __future__ import annotations

from pathlib import Path

from detectlab.errors import WeightsError
from detectlab.weights.by_name import assign, read_h5, read_keras_archive
from detectlab.weights.darknet import load_darknet_weights
from detectlab.weights.report import LoadReport


def load_weights(model, path, exclude: str | None = None) -> LoadReport:
    """Load ``path`` into ``model`` by layer name (Darknet files by layer order)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".weights":
        return load_darknet_weights(model, path)
    if path.suffix == ".keras":
        weights = read_keras_archive(path)
    elif path.suffix in (".h5", ".hdf5"):
        weights = read_h5(path)
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .keras, .h5 or Darknet .weights)")
    return assign(model, weights, str(path), exclude)
