"""What a user looks at after an evaluation, written beside ``metrics.json``:

- ``<stem>_per_class.csv``: per class AP (0.5:0.95), AP50, AP75 and non-crowd instances;
- ``<stem>_pr_curves.png``: precision/recall per class at IoU 0.5 and 0.75, read from
  COCOeval's own ``eval["precision"]`` (101 recall points, all areas, the largest
  ``maxDets``): the mean of a curve is the class's COCO AP at that IoU;
- ``<stem>_confusion_matrix.png``: true class (rows) against predicted class (columns), each
  with a ``background`` entry, at IoU 0.5 and a score threshold (:func:`confusion_matrix`).

Drawn with matplotlib's headless Agg backend.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from detectlab.boxes import iou_matrix

PR_IOUS = (0.5, 0.75)


def pr_curve(evaluator, class_index: int, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(recall (R,), precision (R,))`` of class ``class_index`` (position in
    ``evaluator.params.catIds``) at IoU ``iou``; precision is NaN where COCO leaves it
    undefined (the class has no ground truth)."""
    params = evaluator.params
    t = int(np.flatnonzero(np.isclose(params.iouThrs, iou))[0])
    precision = np.asarray(evaluator.eval["precision"][t, :, class_index, 0, -1], np.float64)
    return np.asarray(params.recThrs, np.float64), np.where(precision > -1, precision, np.nan)


def confusion_matrix(coco_gt, results: list[dict], iou_threshold: float = 0.5, score_threshold: float = 0.3) -> np.ndarray:
    """``int64 (C + 1, C + 1)``: rows the true class, columns the predicted class, in
    ``coco_gt.getCatIds()`` order, the last row/column "background".

    Per image, the results scoring at least ``score_threshold`` take, in score order, the
    unmatched non-crowd ground truth of any class they overlap most (IoU >= threshold):
    a match counts at (true, predicted), an unmatched result at (background, predicted),
    an unmatched ground truth at (true, background).
    """
    cat_ids = list(coco_gt.getCatIds())
    index = {c: k for k, c in enumerate(cat_ids)}
    background = len(cat_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    by_image: dict = {}
    for r in results:
        if r["score"] >= score_threshold:
            by_image.setdefault(r["image_id"], []).append(r)
    for image_id in coco_gt.getImgIds():
        anns = [a for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)]
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        truth = np.array([index[a["category_id"]] for a in anns], np.int64)
        overlaps = iou_matrix(_yxyx([d["bbox"] for d in dets]), _yxyx([a["bbox"] for a in anns]))
        matched = np.zeros(len(anns), bool)
        for row, det in enumerate(dets):
            predicted = index[det["category_id"]]
            candidates = np.where(matched, -1.0, overlaps[row]) if len(anns) else np.zeros(0)
            j = int(np.argmax(candidates)) if len(anns) else -1
            if j >= 0 and candidates[j] >= iou_threshold:
                matched[j] = True
                matrix[truth[j], predicted] += 1
            else:
                matrix[background, predicted] += 1
        np.add.at(matrix, (truth[~matched], background), 1)
    return matrix


def _yxyx(xywh: list) -> np.ndarray:
    b = np.asarray(xywh, np.float32).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)


def write_per_class_csv(per_class: dict, path) -> None:
    """``per_class`` (``metrics[iou_type]["per_class"]``) as CSV: class, AP, AP50, AP75, instances."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "AP", "AP50", "AP75", "instances"])
        for name, v in per_class.items():
            writer.writerow([name, f"{v['AP']:.4f}", f"{v['AP50']:.4f}", f"{v['AP75']:.4f}", v["instances"]])


def save_pr_curves(evaluator, class_names: list[str], path, title: str = "bbox") -> None:
    """One panel per IoU of :data:`PR_IOUS`, one curve per class (labelled with its AP
    when there are at most 20 classes) and their mean in black."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(PR_IOUS), figsize=(6 * len(PR_IOUS), 5), squeeze=False)
    for ax, iou in zip(axes[0], PR_IOUS):
        curves = [pr_curve(evaluator, k, iou) for k in range(len(class_names))]
        labelled = len(class_names) <= 20
        for name, (recall, precision) in zip(class_names, curves):
            if np.isnan(precision).all():
                continue
            ax.plot(recall, precision, linewidth=1.2 if labelled else 0.5, color=None if labelled else "0.7",
                    label=f"{name} {np.nanmean(precision):.3f}" if labelled else None)
        defined = [p for _, p in curves if not np.isnan(p).all()]
        if defined:
            mean = np.nanmean(np.stack(defined), axis=0)
            ax.plot(curves[0][0], mean, color="black", linewidth=2.5, label=f"all classes {np.nanmean(mean):.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{title} precision-recall, IoU {iou}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, title="AP at this IoU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_confusion_matrix(matrix: np.ndarray, class_names: list[str], path, iou: float = 0.5, score: float = 0.3) -> None:
    """Counts in each cell (up to 30 classes), colour by the share of the true class's row."""
    plt = _pyplot()
    labels = list(class_names) + ["background"]
    n = len(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (IoU {iou}, score >= {score})")
    if n <= 31:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_json, metrics: dict, evaluators: dict, coco_gt, results: list[dict], score_threshold: float) -> list[Path]:
    """The files above, named after ``out_json`` (``metrics.json`` -> ``metrics_per_class.csv``,
    ...); PR curves for each iou type evaluated (``segm`` as ``<stem>_pr_curves_segm.png``)."""
    names = [coco_gt.cats[c].get("name", str(c)) for c in coco_gt.getCatIds()]
    table, *curves, matrix = report_paths(out_json, list(evaluators))
    write_per_class_csv(metrics["bbox"]["per_class"], table)
    for (iou_type, evaluator), path in zip(evaluators.items(), curves):
        save_pr_curves(evaluator, names, path, iou_type)
    save_confusion_matrix(confusion_matrix(coco_gt, results, 0.5, score_threshold), names, matrix, 0.5, score_threshold)
    return [table, *curves, matrix]


def report_paths(out_json, iou_types=("bbox", "segm")) -> list[Path]:
    """The files :func:`write_report` writes beside ``out_json``: the per-class table, the PR
    curves of each iou type, the confusion matrix."""
    stem = Path(out_json).parent / Path(out_json).stem
    curves = [Path(f"{stem}_pr_curves{'' if t == 'bbox' else '_' + t}.png") for t in iou_types]
    return [Path(f"{stem}_per_class.csv"), *curves, Path(f"{stem}_confusion_matrix.png")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
