"""Darknet's layers in numpy (not detectlab's code), for weight-file parity tests.

A float64 forward pass of ``[convolutional]`` (Darknet's batch norm ``(x - mean) /
(sqrt(var) + 1e-6)``, or Keras' ``sqrt(var + 1e-3)`` with ``keras_bn``), ``[shortcut]``,
``[route]``, ``[upsample]``, ``[maxpool]`` and ``[yolo]`` over a ``.cfg`` written in the
layout of Darknet's ``yolov3.cfg`` / ``yolov3-tiny.cfg``, narrowed to the widths and depths
of the instant recipes. Weights are drawn during the pass, batch-norm statistics around the
activations' own (small variances, where the epsilons differ most). Images ``(H, W, 3)`` in
``[0, 1]``; tensors ``(H, W, C)``.
"""

from __future__ import annotations

import numpy as np


def _w(channels, width):
    return max(1, int(round(channels * width)))


def conv(filters, size, stride=1, activation="leaky", bn=True):
    return ("convolutional", {"batch_normalize": int(bn), "filters": filters, "size": size, "stride": stride, "pad": 1, "activation": activation})


def yolov3_cfg(width, blocks, outputs):
    """Sections of yolov3.cfg (Darknet-53 + three-scale head) at ``width``."""
    s = [conv(_w(32, width), 3)]
    taps = []
    for stage, repeats in enumerate(blocks):
        f = _w(64 * 2**stage, width)
        s.append(conv(f, 3, 2))
        for _ in range(repeats):
            s += [conv(f // 2, 1), conv(f, 3), ("shortcut", {"from": -3, "activation": "linear"})]
        taps.append(len(s) - 1)
    for level, (n, tap) in enumerate(((512, None), (256, taps[3]), (128, taps[2]))):
        n = _w(n, width)
        if tap is not None:
            s += [("route", {"layers": "-4"}), conv(n, 1), ("upsample", {"stride": 2}), ("route", {"layers": f"-1, {tap}"})]
        s += [conv(n, 1), conv(2 * n, 3), conv(n, 1), conv(2 * n, 3), conv(n, 1), conv(2 * n, 3)]
        s += [conv(outputs, 1, activation="linear", bn=False), ("yolo", {})]
    return s


def yolov3_tiny_cfg(width, outputs):
    """Sections of yolov3-tiny.cfg at ``width``."""
    s = []
    for i, f in enumerate((16, 32, 64, 128, 256, 512)):
        s += [conv(_w(f, width), 3), ("maxpool", {"size": 2, "stride": 2 if i < 5 else 1})]
    s += [conv(_w(1024, width), 3), conv(_w(256, width), 1), conv(_w(512, width), 3)]
    s += [conv(outputs, 1, activation="linear", bn=False), ("yolo", {})]
    s += [("route", {"layers": "-4"}), conv(_w(128, width), 1), ("upsample", {"stride": 2}), ("route", {"layers": "-1, 8"})]
    s += [conv(_w(256, width), 3), conv(outputs, 1, activation="linear", bn=False), ("yolo", {})]
    return s


def cfg_text(sections, size):
    lines = ["[net]", "batch=1", f"width={size}", f"height={size}", "channels=3", ""]
    for kind, opts in sections:
        lines.append(f"[{kind}]")
        lines += [f"{k}={v}" for k, v in opts.items()]
        lines.append("")
    return "\n".join(lines)


def parse_cfg(text):
    sections = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            sections.append((line[1:-1], {}))
        elif "=" in line:
            k, v = (t.strip() for t in line.split("=", 1))
            sections[-1][1][k] = v
    assert sections[0][0] == "net"
    return sections[1:]


def _conv2d(x, kernel, stride, pad):
    """``x (H, W, C)``, ``kernel (out, in, k, k)``: Darknet's im2col convolution."""
    k = kernel.shape[-1]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    oh, ow = (xp.shape[0] - k) // stride + 1, (xp.shape[1] - k) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))[::stride, ::stride][:oh, :ow]
    return np.einsum("hwcij,ocij->hwo", win, kernel)


def _maxpool(x, size, stride):
    """Darknet's maxpool: padding ``size - 1`` on the bottom/right, out of range ignored."""
    pad = size - 1
    oh, ow = (x.shape[0] + pad - size) // stride + 1, (x.shape[1] + pad - size) // stride + 1
    xp = np.pad(x, ((0, pad), (0, pad), (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (size, size), axis=(0, 1))[::stride, ::stride][:oh, :ow]
    return win.max(axis=(-1, -2))


def darknet_forward(sections, image, rng, params=None, keras_bn=False):
    """Darknet's forward pass over ``sections`` -> (raw inputs of each [yolo], params).

    ``params`` None draws the weights (kernels, then BN statistics around the activations'
    own) and returns them in file order; ``keras_bn`` normalises the Keras way instead
    (``sqrt(var + 1e-3)``), to show the test tells the two apart."""
    draw = params is None
    params = [] if draw else list(params)
    outs, yolo, x, n = [], [], image, 0
    for kind, o in sections:
        if kind == "convolutional":
            f, size, stride = int(o["filters"]), int(o["size"]), int(o["stride"])
            pad = size // 2 if int(o.get("pad", 0)) else 0
            if draw:
                kernel = rng.normal(0, 0.1 / np.sqrt(size * size * x.shape[-1]), (f, x.shape[-1], size, size))
            else:
                kernel = params[n][-1]
            y0 = _conv2d(x, kernel, stride, pad)
            if int(o.get("batch_normalize", 0)):
                if draw:
                    mean = y0.mean((0, 1)) + rng.normal(0, 0.05, f) * y0.std((0, 1))
                    # at least a tenth of the mean square: no catastrophic cancellation
                    var = (y0.var((0, 1)) + 0.1 * (y0**2).mean((0, 1))) * rng.uniform(0.5, 2.0, f)
                    params.append((rng.normal(0, 0.2, f), rng.uniform(0.5, 1.5, f), mean, var, kernel))
                beta, gamma, mean, var, _ = params[n]
                denom = np.sqrt(var + 1e-3) if keras_bn else np.sqrt(var) + 1e-6
                y = (y0 - mean) / denom * gamma + beta
            else:
                if draw:
                    params.append((rng.normal(0, 0.2, f), kernel))
                y = y0 + params[n][0]
            n += 1
            x = np.where(y > 0, y, 0.1 * y) if o["activation"] == "leaky" else y
        elif kind == "shortcut":
            x = x + outs[len(outs) + int(o["from"])]
        elif kind == "route":
            idx = [int(i) for i in o["layers"].split(",")]
            x = np.concatenate([outs[i if i >= 0 else len(outs) + i] for i in idx], axis=-1)
        elif kind == "upsample":
            x = x.repeat(int(o["stride"]), 0).repeat(int(o["stride"]), 1)
        elif kind == "maxpool":
            x = _maxpool(x, int(o["size"]), int(o["stride"]))
        elif kind == "yolo":
            yolo.append(x)
        outs.append(x)
    return yolo, params


def write_weights(path, params):
    """Darknet's file: header 0.2.0 + int64 seen, then per conv (beta, gamma, mean, var | bias), kernel."""
    body = [np.concatenate([np.ravel(a) for a in p]) for p in params]
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([1234], np.int64).tobytes()
    path.write_bytes(header + np.concatenate(body).astype(np.float32).tobytes())


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())




def read_weights(path, sections, channels=3):
    """A Darknet ``.weights`` file as ``darknet_forward``'s params, walking ``sections`` for
    each convolution's input channels (header: int32 major, minor, revision; seen int64 from 0.2)."""
    raw = open(path, "rb").read()
    major, minor = np.frombuffer(raw[:8], np.int32)
    values = np.frombuffer(raw[20 if major * 10 + minor >= 2 else 16:], np.float32).astype(np.float64)
    outs, current, offset, params = [], channels, 0, []

    def take(n):
        nonlocal offset
        chunk = values[offset : offset + n]
        offset += n
        return chunk

    for kind, o in sections:
        if kind == "convolutional":
            f, size = int(o["filters"]), int(o["size"])
            head = [take(f) for _ in range(4 if int(o.get("batch_normalize", 0)) else 1)]
            params.append((*head, take(f * current * size * size).reshape(f, current, size, size)))
            current = f
        elif kind == "route":
            idx = [int(i) for i in o["layers"].split(",")]
            current = sum(outs[i if i >= 0 else len(outs) + i] for i in idx)
        outs.append(current)
    assert offset == values.size, f"{path}: {values.size - offset} values left over"
    return params


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def yolo_detections(yolo_inputs, yolo_options, size, thresh, nms):
    """Darknet's ``get_yolo_detections`` + ``do_nms_sort`` for a square ``size`` network input:
    ``[(class, prob, x1, y1, x2, y2)]`` in input pixels, boxes clipped to the input.

    ``yolo_inputs``: each ``[yolo]``'s input ``(H, W, A * (5 + C))``; ``yolo_options``: its
    ``mask``, ``anchors`` (text, as in the .cfg) and ``classes``. A box's class probability
    is ``objectness * sigmoid(class)``; per class, boxes are taken by falling probability and
    each suppresses the later ones whose IoU with it exceeds ``nms``."""
    boxes, probs = [], []
    for x, o in zip(yolo_inputs, yolo_options):
        mask = [int(m) for m in o["mask"].split(",")]
        flat = [float(v) for v in o["anchors"].split(",")]
        anchors = np.array(flat).reshape(-1, 2)[mask]
        classes = int(o["classes"])
        h, w = x.shape[:2]
        t = x.reshape(h, w, len(mask), 5 + classes)
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cx = (cols[..., None] + _sigmoid(t[..., 0])) / w
        cy = (rows[..., None] + _sigmoid(t[..., 1])) / h
        bw = np.exp(t[..., 2]) * anchors[:, 0] / size
        bh = np.exp(t[..., 3]) * anchors[:, 1] / size
        prob = _sigmoid(t[..., 4:5]) * _sigmoid(t[..., 5:])
        boxes.append(np.stack([cx, cy, bw, bh], -1).reshape(-1, 4))
        probs.append(prob.reshape(-1, classes))
    return nms_sort(np.concatenate(boxes), np.concatenate(probs), size, thresh, nms)


def nms_sort(boxes, probs, size, thresh, nms):
    """Darknet's ``do_nms_sort`` over ``boxes (N, 4)`` cx, cy, w, h normalised and ``probs
    (N, C)``: probabilities not above ``thresh`` are 0; per class, by falling probability, each
    box suppresses the later ones whose IoU with it exceeds ``nms``. Returns
    ``[(class, prob, x1, y1, x2, y2)]`` in input pixels, clipped to the input."""
    probs = np.where(probs > thresh, probs, 0)

    def iou(a, b):
        ix = np.maximum(0, np.minimum(a[0] + a[2] / 2, b[:, 0] + b[:, 2] / 2) - np.maximum(a[0] - a[2] / 2, b[:, 0] - b[:, 2] / 2))
        iy = np.maximum(0, np.minimum(a[1] + a[3] / 2, b[:, 1] + b[:, 3] / 2) - np.maximum(a[1] - a[3] / 2, b[:, 1] - b[:, 3] / 2))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)

    out = []
    for k in range(probs.shape[1]):
        order = np.argsort(-probs[:, k], kind="stable")
        order = order[probs[order, k] > 0]
        alive = np.ones(len(order), bool)
        for i in range(len(order)):
            if not alive[i]:
                continue
            a = boxes[order[i]]
            out.append((k, probs[order[i], k], *np.clip(
                [(a[0] - a[2] / 2) * size, (a[1] - a[3] / 2) * size, (a[0] + a[2] / 2) * size, (a[1] + a[3] / 2) * size], 0, size)))
            later = np.arange(len(order)) > i
            alive &= ~(later & (iou(a, boxes[order]) > nms))
    return sorted(out, key=lambda d: -d[1])
