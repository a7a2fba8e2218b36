"""What training feeds the model, drawn; and a dataset summary against the recipe's anchors.

Used by ``tools/browse_dataset.py``. Grids come from the same :class:`DetectionBatches` that
:func:`detectlab.training.runner.make_generators` builds for training (``augment=True``) or
validation (letterbox only), so a sample is drawn exactly as the target encoder receives it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from detectlab.anchor_grid import anchor_shapes as anchor_grid_shapes
from detectlab.anchor_pyramid import ratio_pairs
from detectlab.config import Config
from detectlab.data.loading import load_split
from detectlab.data.mosaic import MIN_SIDE, MIN_VISIBLE
from detectlab.data.records import DetectionDataset
from detectlab.inference.visualize import draw_instances, grid, save_image
from detectlab.registry import MODELS
from detectlab.utils import log

TILE = 256  # grid cell side in pixels


def render_grids(cfg: Config, out: Path, num: int, columns: int, augment: bool, dataset=None) -> list[Path]:
    """Write ``out/grid_NNN.png`` images of the first ``num`` samples of epoch 0; their paths.
    With a mosaic / affine recipe, the boxes it cut off (dropped) are counted in the captions
    and the log. ``dataset``: the recipe's training split, when already loaded."""
    from detectlab.training.runner import make_generators

    dataset = dataset if dataset is not None else load_split(cfg, "train", out)
    family = MODELS.get(cfg.model.family)
    if family.fit_anchors is not None:  # model.anchors: auto -> what training would fit
        cfg = family.fit_anchors(cfg, dataset, report=False)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, workers=0, distribute="none"))
    train_gen, letterboxed = make_generators(cfg, family, dataset, dataset, dataset.num_classes)
    batches = train_gen if augment else letterboxed
    tiles, dropped = [], 0
    for index in range(len(batches)):
        for sample in batches.samples(index):
            tiles.append(draw_sample(sample, dataset.class_names))
            dropped += sample.dropped
            if len(tiles) == num:
                break
        if len(tiles) == num:
            break
    if augment and cfg.augment.composes():
        log.info("mosaic / affine: %d boxes of these %d samples cut off and dropped (under %g px or %g%% visible)",
                 dropped, len(tiles), MIN_SIDE, 100 * MIN_VISIBLE)
    per_grid = columns * columns
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(0, len(tiles), per_grid):
        path = out / f"grid_{k // per_grid:03d}.png"
        save_image(path, grid(tiles[k : k + per_grid], columns, TILE))
        paths.append(path)
    return paths


def draw_sample(sample, class_names: list[str]) -> np.ndarray:
    """A sample's model-input image enlarged to :data:`TILE` px (nearest neighbour, so pixels
    stay visible) with its boxes, class names, masks and a caption ``image <id>`` (``, N cut
    off``: boxes the mosaic / affine step dropped)."""
    size = sample.image.shape[0]
    f = max(1, TILE // size)
    image = cv2.resize(sample.image, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    masks = None
    if sample.masks is not None and len(sample.masks):
        masks = np.repeat(np.repeat(sample.masks, f, axis=1), f, axis=2)
    labels = [class_names[int(c)] + (" (crowd)" if crowd else "") for c, crowd in zip(sample.class_ids, sample.iscrowd)]
    drawn = draw_instances(image, sample.boxes * f, sample.class_ids, labels, masks, sample.iscrowd)
    caption = f"image {sample.image_id}" + (f", {sample.dropped} cut off" if sample.dropped else "")
    cv2.putText(drawn, caption, (3, drawn.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    return drawn


def anchor_shapes(model_cfg) -> np.ndarray:
    """``(K, 2)`` anchor ``w, h`` in model-input pixels of a YOLO, Faster or Mask R-CNN recipe."""
    if hasattr(model_cfg, "anchors"):  # YOLO: w, h pairs
        return np.asarray(model_cfg.anchors, np.float64).reshape(-1, 2)
    ratios = model_cfg.anchor_ratios
    if np.ndim(ratios) == 1:  # Mask R-CNN (matterport): ratio = w / h at constant area scale^2
        ratios = ratio_pairs(ratios)
    return anchor_grid_shapes(model_cfg.anchor_scales, ratios)[:, ::-1].astype(np.float64)  # h, w -> w, h


def box_shapes(dataset: DetectionDataset, size: int) -> np.ndarray:
    """``(N, 2)`` w, h of every non-crowd box, scaled as the letterbox scales its image to ``size``."""
    shapes = []
    for r in dataset.records:
        keep = ~r.iscrowd
        scale = size / max(r.width, r.height)
        shapes.append(np.stack([r.boxes[keep, 3] - r.boxes[keep, 1], r.boxes[keep, 2] - r.boxes[keep, 0]], 1) * scale)
    return np.concatenate(shapes).reshape(-1, 2).astype(np.float64)


def dataset_stats(cfg: Config, out: Path, dataset=None) -> list[Path]:
    """Write ``out/stats.txt`` and ``out/stats.png`` for the recipe's training data
    (``dataset``, when already loaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    dataset = dataset if dataset is not None else load_split(cfg, "train", out)
    family = MODELS.get(cfg.model.family)
    if family.fit_anchors is not None:  # model.anchors: auto -> what training would fit
        cfg = family.fit_anchors(cfg, dataset, report=False)
    size = cfg.model.image_size
    shapes = box_shapes(dataset, size)
    anchors = anchor_shapes(cfg.model)
    counts = dataset.class_counts()
    crowd = sum(int(r.iscrowd.sum()) for r in dataset.records)
    empty = sum(r.num_instances == 0 for r in dataset.records)
    side = np.sqrt(shapes.prod(axis=1)) if len(shapes) else np.zeros(0)
    lines = [
        f"dataset: {dataset.annotation_file or cfg.data.train}",
        f"images: {len(dataset)} ({empty} without labels)",
        f"instances: {int(counts.sum())} (+ {crowd} crowd regions)",
        "instances per class:",
        *[f"  {name}: {int(n)}" for name, n in zip(dataset.class_names, counts)],
    ]
    if len(side):
        q = np.percentile(side, [0, 10, 50, 90, 100])
        lines.append(f"box size sqrt(w*h) at {size} px input: min {q[0]:.1f}, p10 {q[1]:.1f}, median {q[2]:.1f}, "
                     f"p90 {q[3]:.1f}, max {q[4]:.1f}")
        lines.append(f"box aspect w/h: median {np.median(shapes[:, 0] / shapes[:, 1]):.2f}")
    lines.append("anchors (w x h): " + ", ".join(f"{w:g}x{h:g}" for w, h in anchors))
    out.mkdir(parents=True, exist_ok=True)
    text_path = out / "stats.txt"
    text_path.write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    anchor_side, anchor_aspect = np.sqrt(anchors.prod(axis=1)), anchors[:, 0] / anchors[:, 1]
    bins = np.geomspace(max(1.0, min(side.min(initial=size), anchor_side.min()) / 1.5),
                        max(side.max(initial=1.0), anchor_side.max()) * 1.5, 30)
    axes[0].hist(side, bins=bins, color="tab:blue")
    axes[0].set_xscale("log")
    axes[0].set(title=f"box size sqrt(w*h), {size} px input", xlabel="pixels", ylabel="boxes")
    aspect = shapes[:, 0] / shapes[:, 1] if len(shapes) else np.ones(0)
    abins = np.geomspace(min(aspect.min(initial=1), anchor_aspect.min()) / 1.5, max(aspect.max(initial=1), anchor_aspect.max()) * 1.5, 30)
    axes[1].hist(aspect, bins=abins, color="tab:green")
    axes[1].set_xscale("log")
    axes[1].set(title="box aspect ratio w/h", xlabel="w / h", ylabel="boxes")
    for axis, values in ((axes[0], anchor_side), (axes[1], anchor_aspect)):
        for k, value in enumerate(values):
            axis.axvline(value, color="tab:red", linestyle="--", linewidth=1, label="anchors" if k == 0 else None)
        axis.legend(loc="upper right")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
    axes[2].bar(range(len(counts)), counts, color="tab:orange")
    axes[2].set_xticks(range(len(counts)), dataset.class_names, rotation=45, ha="right")
    axes[2].set(title=f"instances per class\n({empty} images without labels, {crowd} crowd)", ylabel="instances")
    fig.tight_layout()
    png_path = out / "stats.png"
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [text_path, png_path]
