"""Darknet ``.weights`` files: read them into our YOLO models, write them (for tests).

File layout: a header of ``major, minor, revision`` (int32) and ``seen`` (int64 when
``major*10 + minor >= 2``, else int32), then float32 parameters per convolution in
``.cfg`` order: with batch norm ``beta, gamma, mean, variance``, else ``bias``; then the
kernel as ``(out, in, kh, kw)``.

Darknet's batch norm (``sqrt(var) + 1e-6``) is reproduced exactly by folding the
difference into ``gamma`` (:mod:`detectlab.weights.batch_norm_fold`), so a model loaded
from a Darknet file gives Darknet's outputs.

A file holds either the whole network or only its first convolutions (the backbone, e.g.
``darknet53.conv.74``). A whole network trained for another number of classes loads
everything except the three output convolutions, which are reported by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from detectlab.errors import WeightsError
from detectlab.utils import named_layers
from detectlab.weights.batch_norm_fold import darknet_gamma_to_keras, keras_gamma_to_darknet
from detectlab.weights.report import LoadReport

_CONV = re.compile(r"(darknet|yolo)_conv_(\d+)$")
_OUTPUT = re.compile(r"yolo_output_(\d+)$")


def darknet_convolutions(model) -> list[tuple[object, object | None]]:
    """``(conv, batch_norm or None)`` pairs in ``.cfg`` order.

    Convolutions carry their ``.cfg`` index in their names; an output convolution
    (``yolo_output_L``) comes right after the convolution that feeds it.
    """
    by_name = {layer.name: layer for layer in named_layers(model)}
    order = []
    for layer in named_layers(model):
        m = _CONV.match(layer.name)
        if m:
            order.append((float(m.group(2)), layer, by_name.get(f"{m.group(1)}_bn_{m.group(2)}")))
        elif _OUTPUT.match(layer.name):
            feeder = layer.input._keras_history.operation.name
            order.append((float(re.search(r"_(\d+)$", feeder).group(1)) + 0.5, layer, None))
    order.sort(key=lambda t: t[0])
    return [(conv, bn) for _, conv, bn in order]


def _conv_size(conv, bn, filters: int | None = None) -> int:
    kh, kw, cin, cout = conv.kernel.shape
    cout = filters or cout
    return (4 if bn is not None else 1) * cout + cout * cin * kh * kw


def read_darknet(path) -> tuple[tuple[int, int, int, int], np.ndarray]:
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 16:
        raise WeightsError(f"{path}: too short for a Darknet weights file")
    major, minor, revision = np.frombuffer(raw[:12], np.int32)
    if major > 1000 or minor > 1000:
        raise WeightsError(f"{path}: not a Darknet weights file (header {major}.{minor})")
    wide = major * 10 + minor >= 2
    seen = int(np.frombuffer(raw[12:20], np.int64)[0]) if wide else int(np.frombuffer(raw[12:16], np.int32)[0])
    body = raw[20:] if wide else raw[16:]
    if len(body) % 4:
        raise WeightsError(f"{path}: parameter block is not a whole number of float32 values")
    return (int(major), int(minor), int(revision), seen), np.frombuffer(body, np.float32)


def load_darknet_weights(model, path, network=None) -> LoadReport:
    """Fill ``model``'s convolutions (and batch norms) from a Darknet file, in order.

    With ``network`` (the file's ``.cfg``, :func:`detectlab.weights.darknet_cfg.read_darknet_cfg`)
    the model's layers are checked against it and the file's size must be exactly what it
    describes (or its first convolutions, for a backbone file); output convolutions of
    another class count are left out and reported. Without it, the class count of the
    file's outputs is worked out from its size."""
    _, data = read_darknet(path)
    layers = darknet_convolutions(model)
    if not layers:
        raise WeightsError(f"{path}: the model has no Darknet-style layers (is it a YOLO model?)")
    if network is not None:
        return _load_with_cfg(layers, data, path, network)
    sizes = [_conv_size(conv, bn) for conv, bn in layers]
    body = sum(1 for conv, _ in layers if conv.name.startswith("darknet_"))
    report = LoadReport()
    count = len(layers)
    if data.size == sum(sizes[:body]):
        count = body
        report.missing = [conv.name for conv, _ in layers[body:]]
    elif data.size != sum(sizes):
        sizes, _ = _sizes_for_other_classes(model, layers, sizes, data.size)
        if sizes is None:
            raise WeightsError(
                f"{path}: holds {data.size} parameters; this model needs {sum(_conv_size(c, b) for c, b in layers)} "
                f"(whole network) or {sum(_conv_size(c, b) for c, b in layers[:body])} (backbone only): "
                "another architecture or width?"
            )
    offset = 0
    for (conv, bn), size in zip(layers[:count], sizes):
        chunk = data[offset : offset + size]
        offset += size
        if size != _conv_size(conv, bn):
            report.excluded.append(conv.name)  # an output trained for another class count
            continue
        _set_conv(conv, bn, chunk, path)
        report.loaded.append(conv.name)
    return report


def check_layers_against_cfg(layers, network, source) -> None:
    """Each of the model's ``(conv, bn)`` pairs must be the ``.cfg``'s convolution at the same
    position (an output convolution may have another number of filters: another class count)."""
    where = f"{source} ({Path(network.path).name})"
    if len(layers) != len(network.convolutions):
        raise WeightsError(
            f"{where}: the .cfg has {len(network.convolutions)} convolutions and {len(network.outputs)} outputs; "
            f"the model has {len(layers)}: the recipe's model.backbone does not describe this network "
            f"(it is a {'YOLOv3-tiny' if network.backbone == 'darknet_tiny' else 'YOLOv3'})"
        )
    for k, ((conv, bn), cfg_conv) in enumerate(zip(layers, network.convolutions)):
        kh, kw, cin, cout = conv.kernel.shape
        output = bool(_OUTPUT.match(conv.name))
        same = ((kh, kw, cin) == (cfg_conv.size, cfg_conv.size, cfg_conv.in_channels) and conv.strides[0] == cfg_conv.stride
                and (bn is not None) == cfg_conv.batch_norm and (output or cout == cfg_conv.filters))
        if not same:
            ours = f"{kh}x{kw} stride {conv.strides[0]}, {cin} -> {cout} channels, {'batch norm' if bn is not None else 'bias'}"
            raise WeightsError(
                f"{Path(network.path).name}:{cfg_conv.line}: convolution {k} is {cfg_conv.describe()}, but the model's "
                f"{conv.name} is {ours}: the recipe (model.backbone, width) does not describe this .cfg"
            )


def _load_with_cfg(layers, data: np.ndarray, path, network) -> LoadReport:
    check_layers_against_cfg(layers, network, path)
    sizes = network.parameter_counts()
    ends = np.cumsum(sizes).tolist()
    if data.size not in ends:
        nbytes = Path(path).stat().st_size
        header = nbytes - 4 * data.size
        raise WeightsError(
            f"{path}: {nbytes:,} bytes, but {Path(network.path).name} describes {ends[-1]:,} float32 parameters after "
            f"the {header}-byte header ({header + 4 * ends[-1]:,} bytes, or the first convolutions of that for a "
            "backbone file): the file is cut short or belongs to another .cfg"
        )
    count = ends.index(data.size) + 1
    report, offset = LoadReport(), 0
    for (conv, bn), size in zip(layers[:count], sizes):
        chunk = data[offset : offset + size]
        offset += size
        if size != _conv_size(conv, bn):
            report.excluded.append(conv.name)  # an output trained for another class count
            continue
        _set_conv(conv, bn, chunk, path)
        report.loaded.append(conv.name)
    report.missing = [conv.name for conv, _ in layers[count:]]
    return report


def darknet_class_count(model, path) -> int | None:
    """The class count of a whole-network Darknet file of ``model``'s architecture (built for
    any class count), worked out from the file's size; None when no count fits."""
    _, data = read_darknet(path)
    layers = darknet_convolutions(model)
    sizes = [_conv_size(conv, bn) for conv, bn in layers]
    if data.size == sum(sizes):
        return model.num_classes
    return _sizes_for_other_classes(model, layers, sizes, data.size)[1]


def _sizes_for_other_classes(model, layers, sizes, total):
    """``(per-conv sizes, class count)`` if the file's outputs were trained for another class
    count, else ``(None, None)``."""
    masks = model.constructor_args.get("anchor_masks") if hasattr(model, "constructor_args") else None
    if not masks:
        return None, None
    outputs = {i: int(_OUTPUT.match(conv.name).group(1)) for i, (conv, _) in enumerate(layers) if _OUTPUT.match(conv.name)}
    fixed = sum(s for i, s in enumerate(sizes) if i not in outputs)
    per_class = base = 0
    for i, level in outputs.items():
        kh, kw, cin, _ = layers[i][0].kernel.shape
        anchors = len(masks[level])
        per_class += anchors * (cin * kh * kw + 1)
        base += anchors * 5 * (cin * kh * kw + 1)
    remaining = total - fixed - base
    if remaining <= 0 or remaining % per_class:
        return None, None
    classes = remaining // per_class
    out = list(sizes)
    for i, level in outputs.items():
        out[i] = _conv_size(layers[i][0], None, filters=len(masks[level]) * (5 + classes))
    return out, classes


def _set_conv(conv, bn, chunk: np.ndarray, source) -> None:
    kh, kw, cin, cout = conv.kernel.shape
    offset = 0
    if not np.isfinite(chunk).all():
        raise WeightsError(f"{source}: non-finite values where {conv.name} is read: a damaged file or another network")
    if bn is not None:
        beta, gamma, mean, var = (chunk[offset + k * cout : offset + (k + 1) * cout] for k in range(4))
        if (var < 0).any():  # what a read shifted by a wrong layout finds first
            raise WeightsError(
                f"{source}: negative batch-norm variance where {conv.name} is read: the file does not follow this "
                "network's layout (cut short, or another architecture or class count)"
            )
        offset += 4 * cout
        bn.set_weights([darknet_gamma_to_keras(gamma, var, bn.epsilon), beta, mean, var])
        bias = None
    else:
        bias = chunk[:cout]
        offset += cout
    kernel = chunk[offset : offset + cout * cin * kh * kw].reshape(cout, cin, kh, kw).transpose(2, 3, 1, 0)
    conv.set_weights([kernel] if bias is None else [kernel, bias])


def write_darknet(model, path, body_only: bool = False, version=(0, 2, 0), seen: int = 0) -> None:
    """Write ``model`` in Darknet's format (the inverse of :func:`load_darknet_weights`)."""
    chunks = []
    for conv, bn in darknet_convolutions(model):
        if body_only and not conv.name.startswith("darknet_"):
            break
        weights = conv.get_weights()
        if bn is not None:
            gamma, beta, mean, var = bn.get_weights()
            chunks += [beta, keras_gamma_to_darknet(gamma, var, bn.epsilon), mean, var]
        else:
            chunks.append(weights[1])
        chunks.append(weights[0].transpose(3, 2, 0, 1).reshape(-1))
    major, minor, revision = version
    header = np.array([major, minor, revision], np.int32).tobytes()
    header += np.array([seen], np.int64 if major * 10 + minor >= 2 else np.int32).tobytes()
    Path(path).write_bytes(header + np.concatenate([c.reshape(-1) for c in chunks]).astype(np.float32).tobytes())
