"""keras-yolo3 ``.h5`` files, loaded by structure into our YOLOv3 / YOLOv3-tiny.

keras-yolo3's ``convert.py`` saves a whole Keras 2 model (``model_config`` attribute,
``model_weights`` group), its ``train.py`` weights only (root ``layer_names``); either way
layers are auto-named in creation order (``conv2d_1``, ``batch_normalization_1``, ... or
tf.keras' ``conv2d``, ``conv2d_1``, ...), which is Darknet's ``.cfg`` order, so the names
say nothing across models. The N-th convolution of the file (by its name's number) goes to
our N-th convolution in ``.cfg`` order, the M-th batch norm to our M-th; every shape is
checked before anything is set. keras-yolo3 used Keras' batch norm (epsilon 1e-3, like
ours), so values are copied as they are. A file trained for another class count loads all
but the output convolutions (``yolo_output_L``), which are reported as excluded.
"""

from __future__ import annotations

import re

import numpy as np

from detectlab.errors import WeightsError
from detectlab.weights.report import LoadReport
from detectlab.weights.darknet import darknet_convolutions

_AUTO = re.compile(r"(conv2d|batch_normalization)(?:_(\d+))?$")
_OUTPUT = re.compile(r"yolo_output_\d+$")


def is_auto_named(weights: dict) -> bool:
    """True for a Keras 2 file whose convolutions are auto-named (``conv2d_N``)."""
    return any(_AUTO.match(name) and name.startswith("conv2d") for name in weights)


def _in_creation_order(weights: dict, kind: str) -> list[tuple[str, list[np.ndarray]]]:
    found = [(int(m.group(2) or 0), name) for name in weights if (m := _AUTO.match(name)) and m.group(1) == kind]
    return [(name, weights[name]) for _, name in sorted(found)]


def _shapes(arrays) -> list[tuple]:
    return [tuple(a.shape) for a in arrays]


def _other_class_count(expected: list[tuple], found: list[tuple]) -> bool:
    """Same output convolution but for another number of classes (last axis differs)."""
    return len(expected) == len(found) and all(e[:-1] == f[:-1] for e, f in zip(expected, found))


def load_keras_yolo3(model, weights: dict, source: str, exclude: str | None = None) -> LoadReport:
    """Assign a keras-yolo3 file's ``{layer name: arrays}`` to ``model`` by creation order."""
    layers = darknet_convolutions(model)
    if not layers:
        raise WeightsError(f"{source}: a keras-yolo3 file (auto-named conv2d_N layers) needs a YOLO model")
    convs = _in_creation_order(weights, "conv2d")
    bns = _in_creation_order(weights, "batch_normalization")
    want_bns = sum(bn is not None for _, bn in layers)
    if len(convs) != len(layers) or len(bns) != want_bns:
        raise WeightsError(
            f"{source}: holds {len(convs)} convolutions and {len(bns)} batch norms ({convs[0][0]} .. {convs[-1][0]}); "
            f"this model has {len(layers)} and {want_bns}: another architecture (YOLOv3 has 75 and 72, tiny 13 and 11)?"
        )
    pattern = re.compile(exclude) if exclude else None
    report, updates, bn_iter = LoadReport(), [], iter(bns)
    for k, ((conv, bn), (file_name, arrays)) in enumerate(zip(layers, convs), start=1):
        file_bn = next(bn_iter) if bn is not None else None
        if pattern is not None and pattern.fullmatch(conv.name):
            report.excluded.append(conv.name)
            continue
        expected, found = _shapes(conv.weights), _shapes(arrays)
        if expected != found:
            if _OUTPUT.match(conv.name) and _other_class_count(expected, found):
                report.excluded.append(conv.name)  # trained for another class count
                continue
            raise WeightsError(
                f"{source}: {file_name} (convolution {k} in creation order) has shapes {found} in the file "
                f"but {conv.name} needs {expected}: another architecture or width?"
            )
        updates.append((conv, arrays))
        if bn is not None:
            bn_name, bn_arrays = file_bn
            if _shapes(bn.weights) != _shapes(bn_arrays):
                raise WeightsError(
                    f"{source}: {bn_name} has shapes {_shapes(bn_arrays)} in the file but {bn.name} needs {_shapes(bn.weights)}"
                )
            updates.append((bn, bn_arrays))
        report.loaded.append(conv.name)
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return report


# keras-yolo3 (like Darknet's YOLOv3 and YOLOv3-tiny) gives every output scale three anchors
KERAS_YOLO3_ANCHORS_PER_OUTPUT = 3


def keras_yolo3_class_count(path) -> int | None:
    """The class count of a keras-yolo3 ``.h5`` (its output convolutions, the ones with a
    bias, have ``3 * (5 + C)`` filters); None for other files."""
    from detectlab.weights.by_name import read_h5

    try:
        weights = read_h5(path)
    except WeightsError:
        return None
    if not is_auto_named(weights):
        return None
    outputs = [arrays[0].shape[-1] for name, arrays in _in_creation_order(weights, "conv2d") if len(arrays) == 2]
    counts = {filters // KERAS_YOLO3_ANCHORS_PER_OUTPUT - 5 for filters in outputs
              if filters % KERAS_YOLO3_ANCHORS_PER_OUTPUT == 0}
    if len(counts) != 1 or len(outputs) not in (2, 3) or min(counts) < 1:
        raise WeightsError(f"{path}: keras-yolo3 output convolutions of {outputs} filters: not 3 x (5 + classes) each")
    return counts.pop()
