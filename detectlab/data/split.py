"""Split a COCO instances dict into train and val, stratified by class where possible."""

from __future__ import annotations

import numpy as np

from detectlab.errors import DataError


def split_coco(data: dict, val_ratio: float, seed: int = 0) -> tuple[dict, dict]:
    """``(train, val)`` COCO dicts holding disjoint images (all categories in both).

    Stratified: each image is grouped by the rarest class it contains (images without
    objects form their own group; groups of one image are pooled), and every group sends ``round(val_ratio * size)`` of its
    images, chosen with ``seed``, to val, so every class with a few images appears in both.
    """
    if not 0 < val_ratio < 1:
        raise DataError(f"val ratio must be between 0 and 1, got {val_ratio}")
    images = data["images"]
    if len(images) < 2:
        raise DataError(f"{len(images)} image(s): nothing to split")
    counts: dict = {}
    classes_of: dict = {img["id"]: set() for img in images}
    for ann in data["annotations"]:
        counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
        classes_of[ann["image_id"]].add(ann["category_id"])
    groups: dict = {}
    for img in images:
        present = classes_of[img["id"]]
        key = min(present, key=lambda c: (counts[c], c)) if present else None
        groups.setdefault(key, []).append(img["id"])
    rng = np.random.default_rng(seed)
    ordered = [groups[k] for k in sorted(groups, key=lambda k: (k is None, k))]
    pool = [i for ids in ordered if len(ids) == 1 for i in ids]  # single images: split together
    val_ids = set()
    for ids in [ids for ids in ordered if len(ids) > 1] + ([pool] if pool else []):
        take = int(round(val_ratio * len(ids)))
        if len(ids) > 1:
            take = min(max(take, 1), len(ids) - 1)  # both sides get this class when they can
        val_ids.update(ids[k] for k in rng.permutation(len(ids))[:take])
    if not val_ids or len(val_ids) == len(images):
        raise DataError(f"val ratio {val_ratio} leaves an empty split of {len(images)} images")
    return _subset(data, lambda i: i not in val_ids), _subset(data, lambda i: i in val_ids)


def _subset(data: dict, keep) -> dict:
    return {
        **data,
        "images": [img for img in data["images"] if keep(img["id"])],
        "annotations": [a for a in data["annotations"] if keep(a["image_id"])],
    }
