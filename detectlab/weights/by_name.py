"""Load weights into a model layer by layer, matching layer names.

Sources:

- ``.keras``: our checkpoints (the model is rebuilt from the archive's config);
- ``.h5``: the classic Keras by-name layout (``layer_names`` / ``weight_names`` attributes,
  optionally under ``model_weights/``), the layout the reference Keras Mask R-CNN, Faster
  R-CNN and YOLOv3 ship their weights in; :func:`save_h5` writes it;
- keras-frcnn's ``model_frcnn.hdf5`` and Keras' application files too, once
  :mod:`detectlab.weights.keras_frcnn` / :mod:`detectlab.weights.imagenet` have renamed them.

(:func:`detectlab.weights.formats.load_weights` picks the reader by file type: keras-yolo3
files by creation order, :mod:`detectlab.weights.keras_yolo3`; Darknet ``.weights`` by
layer order, :mod:`detectlab.weights.darknet`.)

Layers matching ``exclude`` (a regex) are skipped, e.g. the class-specific heads when
fine-tuning on another class set. A layer whose shapes differ is an error naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from detectlab.errors import WeightsError
from detectlab.utils import atomic_path, named_layers
from detectlab.weights.report import LoadReport


def assign(model, weights: dict[str, list[np.ndarray]], source: str, exclude: str | None = None) -> LoadReport:
    """Set each model layer's weights from ``weights[layer.name]`` after checking shapes."""
    pattern = re.compile(exclude) if exclude else None
    report = LoadReport()
    updates, mismatched = [], []
    for layer in named_layers(model):
        if not layer.weights:
            continue
        if pattern is not None and pattern.fullmatch(layer.name):
            report.excluded.append(layer.name)
            continue
        values = weights.get(layer.name)
        if values is None:
            report.missing.append(layer.name)
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(v.shape) for v in values]
        if expected != found:
            mismatched.append((layer.name, f"layer '{layer.name}' has shapes {found} in the file but {expected} in the model"))
            continue
        updates.append((layer, values))
        report.loaded.append(layer.name)
    if mismatched:
        names, messages = zip(*mismatched)
        raise WeightsError(f"{source}: {'; '.join(messages)} (exclude to fine-tune: --exclude '{'|'.join(names)}')")
    if not updates:
        raise WeightsError(f"{source}: no layer name matches the model (is this a weights file for this model?)")
    for layer, values in updates:
        layer.set_weights(values)
    names = {layer.name for layer in named_layers(model)}
    report.unused = sorted(set(weights) - names)
    left_out = getattr(model, "LEFT_OUT_LAYERS", None)  # e.g. Faster R-CNN FPN: matterport's mask head
    if left_out:
        report.left_out = [name for name in report.unused if re.fullmatch(left_out, name)]
    return report


def check_keras_archive(path) -> None:
    """Raise a one-line ``WeightsError`` unless ``path`` is a readable ``.keras`` zip archive
    (Keras itself reports a damaged one as "File not found")."""
    import zipfile

    if not Path(path).is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a Keras .keras archive (damaged or not a zip file: {exc})") from None
    if damaged is not None or not {"config.json", "model.weights.h5"} <= names:
        what = f"its member {damaged} is damaged" if damaged else "no config.json / model.weights.h5 in it"
        raise WeightsError(f"{path}: not a complete Keras .keras archive ({what})")


def read_keras_archive(path) -> dict[str, list[np.ndarray]]:
    import keras

    check_keras_archive(path)
    try:
        saved = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # a damaged or foreign archive: say which file and why
        raise WeightsError(f"{path}: cannot read Keras archive: {str(exc).splitlines()[0]}") from None
    return {layer.name: layer.get_weights() for layer in named_layers(saved) if layer.weights}


def read_h5(path) -> dict[str, list[np.ndarray]]:
    """Classic Keras by-name HDF5 layout -> ``{layer name: [arrays]}``.

    A nested model saved as one group (matterport's shared ``rpn_model``, whose weights are
    named ``rpn_conv_shared/kernel:0`` ...) is split into its layers by weight-name prefix."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise WeightsError(
                f"{path}: no 'layer_names' attribute: not a by-name Keras weights file "
                "(Keras 3 '.weights.h5' files store no layer names; use a .keras checkpoint)"
            )
        out = {}
        for raw_name in group.attrs["layer_names"]:
            name = _text(raw_name)
            layer_group = group[name]
            for raw_weight in layer_group.attrs.get("weight_names", []):
                weight = _text(raw_weight)
                owner = weight.split("/")[0] if "/" in weight else name
                out.setdefault(owner, []).append(np.asarray(layer_group[weight]))
        return {k: v for k, v in out.items() if v}


# root attribute of our .h5 files: the model's class name and config (its anchors, masks,
# classes, ...), as a .keras archive's config.json holds them
MODEL_CONFIG_ATTR = "detectlab_model_config"


def saved_model_config(path) -> dict | None:
    """``{"class_name", "config"}`` of the model a ``.keras`` archive or one of our ``.h5``
    files was saved from (None for other files)."""
    import json
    import zipfile

    path = Path(path)
    try:
        if path.suffix == ".keras":
            check_keras_archive(path)  # a damaged archive named as such, not as missing
            with zipfile.ZipFile(path) as archive:
                saved = json.loads(archive.read("config.json"))
        else:
            with h5py.File(path, "r") as f:
                if MODEL_CONFIG_ATTR not in f.attrs:
                    return None
                saved = json.loads(_text(f.attrs[MODEL_CONFIG_ATTR]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable {'Keras archive' if path.suffix == '.keras' else 'HDF5 file'} "
                           f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'damaged'})") from None
    return saved if isinstance(saved, dict) and isinstance(saved.get("config"), dict) else None


def save_h5(model, path) -> None:
    """Write ``model``'s weights in the classic by-name layout, atomically (with its model
    config under :data:`MODEL_CONFIG_ATTR` when it is a detectlab model)."""
    import json

    with atomic_path(path, Path(path).suffix) as tmp:
        with h5py.File(tmp, "w") as f:
            named = [layer for layer in named_layers(model) if layer.weights]
            f.attrs["layer_names"] = [layer.name.encode() for layer in named]
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"3"
            if hasattr(model, "constructor_args"):
                f.attrs[MODEL_CONFIG_ATTR] = json.dumps({"class_name": type(model).__name__, "config": model.get_config()})
            for layer in named:
                g = f.create_group(layer.name)
                weight_names = [f"{layer.name}/{_short_name(w)}:0" for w in layer.weights]
                g.attrs["weight_names"] = [n.encode() for n in weight_names]
                for name, value in zip(weight_names, layer.get_weights()):
                    g.create_dataset(name, data=value)


def _short_name(variable) -> str:
    return variable.path.split("/")[-1] if hasattr(variable, "path") else variable.name


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
