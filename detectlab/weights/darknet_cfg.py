"""Darknet ``.cfg`` files: the network a ``.weights`` file was trained as.

A ``.cfg`` is a list of ``[section]`` blocks of ``key=value`` lines (``#`` and ``;`` start
comments). detectlab reads the sections of the YOLOv3 family: ``[net]`` (input ``width``,
``height``, ``channels``), ``[convolutional]`` (``filters``, ``size``, ``stride``, ``pad``,
``batch_normalize``, ``activation``), ``[maxpool]``, ``[route]`` (``layers``, relative when
negative), ``[shortcut]``, ``[upsample]`` and ``[yolo]`` (``mask``, ``anchors`` as ``w,h``
pairs in input pixels, ``classes``, ``num``, ``ignore_thresh``). Channel counts are
propagated through the layers, so the exact parameter count of a ``.weights`` file follows
(per convolution: ``beta, gamma, mean, variance`` with batch norm, else ``bias``, then the
``(filters, in, size, size)`` kernel).

The first ``[yolo]`` section is the coarsest output (stride 32), which is detectlab's
``yolo_output_0``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from detectlab.errors import WeightsError

SECTIONS = ("net", "network", "convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")


@dataclass(frozen=True)
class DarknetConv:
    """One ``[convolutional]`` section, with the channels it receives."""

    line: int  # where the section starts in the .cfg
    filters: int
    size: int
    stride: int
    batch_norm: bool
    activation: str
    in_channels: int

    @property
    def parameters(self) -> int:
        """float32 values this convolution holds in a ``.weights`` file."""
        return (4 if self.batch_norm else 1) * self.filters + self.filters * self.in_channels * self.size * self.size

    def describe(self) -> str:
        bn = "batch norm" if self.batch_norm else "bias"
        return f"{self.size}x{self.size} stride {self.stride}, {self.in_channels} -> {self.filters} channels, {bn}"


@dataclass(frozen=True)
class DarknetYolo:
    """One ``[yolo]`` section: the anchors (of all outputs) and which this output uses."""

    line: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]
    classes: int
    ignore_thresh: float


@dataclass(frozen=True)
class DarknetNetwork:
    """What a ``.cfg`` describes: input size, convolutions in file order, YOLO outputs."""

    path: str
    width: int
    height: int
    channels: int
    convolutions: tuple[DarknetConv, ...]
    outputs: tuple[DarknetYolo, ...]

    @property
    def anchors(self) -> list[list[float]]:
        return [list(a) for a in self.outputs[0].anchors]

    @property
    def anchor_masks(self) -> list[list[int]]:
        return [list(o.mask) for o in self.outputs]

    @property
    def num_classes(self) -> int:
        return self.outputs[0].classes

    @property
    def backbone(self) -> str:
        """detectlab's body for this network: two outputs are YOLOv3-tiny, three YOLOv3."""
        return "darknet_tiny" if len(self.outputs) == 2 else "darknet53"

    def parameter_counts(self) -> list[int]:
        return [conv.parameters for conv in self.convolutions]

    def model_settings(self) -> dict:
        """The recipe's ``model`` values this network fixes."""
        return {"backbone": self.backbone, "image_size": max(self.width, self.height), "anchors": self.anchors,
                "anchor_masks": self.anchor_masks, "num_classes": self.num_classes}


def read_darknet_cfg(path) -> DarknetNetwork:
    """Parse ``path``; a section or value detectlab cannot build is a ``WeightsError``
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: Darknet .cfg not found")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable Darknet .cfg text file ({exc.__class__.__name__})") from None
    sections = _sections(text, path)
    if not sections or sections[0][0] not in ("net", "network"):
        raise WeightsError(f"{path}: a Darknet .cfg starts with a [net] section")
    return _network(sections, path)


def _sections(text: str, path: Path) -> list[tuple[str, int, dict]]:
    sections: list[tuple[str, int, dict]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # Darknet ignores every blank, also inside values
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            name = line.strip("[]").lower()
            if not line.endswith("]") or name not in SECTIONS:
                raise WeightsError(
                    f"{path}:{number}: section {raw.strip()} is not one detectlab builds "
                    f"(YOLOv3 / YOLOv3-tiny use {', '.join(f'[{s}]' for s in SECTIONS[1:])})"
                )
            sections.append((name, number, {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][2][key] = value
        else:
            raise WeightsError(f"{path}:{number}: expected [section] or key=value, got {raw.strip()[:60]!r}")
    return sections


def _number(options: dict, key: str, default, path: Path, line: int, cast=int):
    text = options.get(key)
    if text is None:
        if default is None:
            raise WeightsError(f"{path}:{line}: missing '{key}='")
        return default
    try:
        return cast(text)
    except ValueError:
        raise WeightsError(f"{path}:{line}: {key}={text!r} is not a number") from None


def _numbers(options: dict, key: str, path: Path, line: int, cast=int) -> list:
    try:
        return [cast(v) for v in options.get(key, "").split(",") if v]
    except ValueError:
        raise WeightsError(f"{path}:{line}: {key}={options.get(key)!r} is not a list of numbers") from None


def _network(sections, path: Path) -> DarknetNetwork:
    _, net_line, net = sections[0]
    width, height = _number(net, "width", None, path, net_line), _number(net, "height", None, path, net_line)
    channels = _number(net, "channels", 3, path, net_line)
    out_channels: list[int] = []  # per layer (every section after [net] is a layer)
    convolutions, outputs = [], []
    current = channels
    for index, (kind, line, o) in enumerate(sections[1:]):
        if kind == "convolutional":
            if _number(o, "groups", 1, path, line) != 1:
                raise WeightsError(f"{path}:{line}: grouped convolutions are not part of YOLOv3")
            conv = DarknetConv(line, _number(o, "filters", None, path, line), _number(o, "size", 1, path, line),
                               _number(o, "stride", 1, path, line), bool(_number(o, "batch_normalize", 0, path, line)),
                               o.get("activation", "logistic"), current)
            if conv.filters < 1 or conv.size < 1 or conv.stride < 1:
                raise WeightsError(f"{path}:{line}: filters, size and stride must be positive")
            convolutions.append(conv)
            current = conv.filters
        elif kind == "route":
            if "groups" in o:
                raise WeightsError(f"{path}:{line}: [route] groups (YOLOv4-tiny) are not part of YOLOv3")
            sources = [i if i >= 0 else index + i for i in _numbers(o, "layers", path, line)]
            if not sources or any(not 0 <= i < index for i in sources):
                raise WeightsError(f"{path}:{line}: [route] layers={o.get('layers')} point outside the earlier layers")
            current = sum(out_channels[i] for i in sources)
        elif kind == "shortcut":
            source = _number(o, "from", None, path, line)
            source = source if source >= 0 else index + source
            if not 0 <= source < index or out_channels[source] != current:
                raise WeightsError(f"{path}:{line}: [shortcut] from={o.get('from')} does not add a layer of {current} channels")
        elif kind == "yolo":
            outputs.append(_yolo(o, path, line, convolutions, current))
        out_channels.append(current)
    if len(outputs) not in (2, 3):
        raise WeightsError(f"{path}: has {len(outputs)} [yolo] sections; YOLOv3 has 3 and YOLOv3-tiny 2")
    if any(o.anchors != outputs[0].anchors or o.classes != outputs[0].classes for o in outputs):
        raise WeightsError(f"{path}: the [yolo] sections disagree on anchors or classes (lines {outputs[0].line} and on)")
    return DarknetNetwork(str(path), width, height, channels, tuple(convolutions), tuple(outputs))


def _yolo(o: dict, path: Path, line: int, convolutions: list, channels: int) -> DarknetYolo:
    flat = _numbers(o, "anchors", path, line, float)
    if not flat or len(flat) % 2 or any(v <= 0 for v in flat):
        raise WeightsError(f"{path}:{line}: anchors= must be positive w,h pairs")
    anchors = tuple((flat[k], flat[k + 1]) for k in range(0, len(flat), 2))
    num = _number(o, "num", len(anchors), path, line)
    if num != len(anchors):
        raise WeightsError(f"{path}:{line}: num={num} but anchors= lists {len(anchors)} pairs")
    mask = tuple(_numbers(o, "mask", path, line)) or tuple(range(num))
    if any(not 0 <= m < num for m in mask):
        raise WeightsError(f"{path}:{line}: mask={o.get('mask')} must index the {num} anchors")
    classes = _number(o, "classes", 20, path, line)
    expected = len(mask) * (classes + 5)
    if not convolutions or channels != expected:
        raise WeightsError(
            f"{path}:{line}: the convolution before this [yolo] gives {channels} channels; {len(mask)} anchors x "
            f"({classes} classes + 5) need {expected}"
        )
    return DarknetYolo(line, mask, anchors, classes, _number(o, "ignore_thresh", 0.5, path, line, float))


def cfg_beside(weights, given=None) -> Path | None:
    """The ``.cfg`` of a ``.weights`` file: ``given`` (which must exist), else the file with
    the same stem beside it (``yolov3-tiny.weights`` -> ``yolov3-tiny.cfg``), else None."""
    if given:
        if not Path(given).is_file():
            raise WeightsError(f"--cfg {given}: file not found")
        return Path(given)
    candidate = Path(weights).with_suffix(".cfg")
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class PublishedFile:
    """A published ``.weights`` file known by its MD5: the network it was trained as (used
    without a ``.cfg``), and the anchor masks it was trained with, which win over its ``.cfg``."""

    name: str
    settings: dict
    why: str

    @property
    def anchor_masks(self) -> list[list[int]]:
        return self.settings["anchor_masks"]


# Darknet's COCO yolov3-tiny.weights was trained with the first yolov3-tiny.cfg, whose 26x26
# output used anchors 1,2,3; the .cfg published today says 0,1,2, which halves its COCO mAP
# (ultralytics/yolov3#256; AlexeyAB/darknet#1341: usable "only with this typo").
PUBLISHED_FILES = {
    "3bcd6b390912c18924b46b26a9e7ff53": PublishedFile(
        "Darknet's COCO yolov3-tiny.weights",
        {"backbone": "darknet_tiny", "image_size": 416, "num_classes": 80,
         "anchors": [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]], "anchor_masks": [[3, 4, 5], [1, 2, 3]]},
        "it was trained with mask = 1,2,3 on its 26x26 output (the published .cfg's 0,1,2 halves its mAP)",
    ),
}


def published_file(path) -> PublishedFile | None:
    """The :data:`PUBLISHED_FILES` entry of ``path`` (by MD5), if any."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return PUBLISHED_FILES.get(digest.hexdigest())
