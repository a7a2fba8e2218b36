import json

import numpy as np

from detectlab.data.coco import load_coco


def test_shapes_dataset_is_coco_with_masks_and_unbalanced(shapes_dir):
    data = json.loads((shapes_dir / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["square", "circle", "triangle"]
    assert len(data["images"]) == 48
    ds = load_coco(shapes_dir / "instances_train.json")
    counts = ds.class_counts()
    assert counts[0] > counts[2]  # squares outnumber triangles
    per_image = [r.num_instances for r in ds.records]
    assert min(per_image) <= 1 and max(per_image) >= 3
    i = int(np.argmax(per_image))
    masks, record = ds.load_masks(i), ds[i]
    for mask, (y1, x1, y2, x2) in zip(masks, record.boxes):
        ys, xs = np.nonzero(mask)
        assert abs(ys.min() - y1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
    assert ds.load_image(i).shape == (64, 64, 3)


def test_written_once_per_parameters(shapes_dir):
    from detectlab.data.shapes import write_shapes_dataset

    before = (shapes_dir / "instances_train.json").stat().st_mtime_ns
    write_shapes_dataset(shapes_dir, train=48, val=16, size=64, seed=0)
    assert (shapes_dir / "instances_train.json").stat().st_mtime_ns == before
