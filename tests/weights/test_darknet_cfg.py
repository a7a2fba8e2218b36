"""A Darknet file goes with its ``.cfg``: detectlab reads the anchors, masks, classes and input
size there, checks its layers against the model and the file's size against the ``.cfg``, and
gives the detections Darknet gives (numpy Darknet of :mod:`tests.weights.darknet_reference`,
forward + decoding + NMS, on real photos; OpenCV's Darknet runtime in a slow test)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detectlab.errors import WeightsError
from detectlab.weights.darknet_cfg import read_darknet_cfg
from tests.conftest import ROOT, shared_path, tool
from tests.weights.darknet_reference import (
    cfg_text, darknet_forward, nms_sort, parse_cfg, read_weights, write_weights, yolo_detections, yolov3_tiny_cfg,
)

TINY_RECIPE = ROOT / "models" / "yolov3_tiny_coco416.yaml"


def letterboxed_photo(name: str, size: int) -> np.ndarray:
    """A kangaroo photo letterboxed (centred, grey 128) to ``size`` x ``size`` RGB uint8."""
    image = cv2.imread(str(shared_path("data", "kangaroo", "images", name)))[..., ::-1]
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    canvas = np.full((size, size, 3), 128, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def predicted(tmp_path, image: np.ndarray, weights, score: float, *extra) -> list[tuple]:
    """``tools/predict.py`` on ``image`` (written as PNG): ``[(class id, score, x1, y1, x2, y2)]``."""
    cv2.imwrite(str(tmp_path / "photo.png"), image[..., ::-1])
    done = tool("tools/predict.py", "--config", TINY_RECIPE, "--weights", weights, "--images", tmp_path / "photo.png",
                "--out", tmp_path / "out", "--score", score, "--nms", 0.45, "--max-detections", 300, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    return done, [(r["category_id"], r["score"], r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                   r["bbox"][1] + r["bbox"][3]) for r in results]


def assert_same_detections(ours, reference, threshold, category_ids, score_tolerance=1e-4, box_tolerance=0.05):
    """Every detection on both sides has a counterpart (same class, boxes within
    ``box_tolerance`` px, probabilities within ``score_tolerance``), except ones that close to
    the threshold."""
    def unmatched(a_list, b_list):
        out = []
        for a in a_list:
            if abs(a[1] - threshold) < score_tolerance:
                continue
            if not any(a[0] == b[0] and abs(a[1] - b[1]) < score_tolerance
                       and np.abs(np.subtract(a[2:], b[2:])).max() < box_tolerance for b in b_list):
                out.append(a)
        return out

    reference = [(category_ids[k], p, *box) for k, p, *box in reference]
    assert not unmatched(ours, reference), f"detectlab only: {unmatched(ours, reference)[:3]}"
    assert not unmatched(reference, ours), f"reference only: {unmatched(reference, ours)[:3]}"


def test_the_published_cfg_reads_as_darknet_describes_it():
    network = read_darknet_cfg(shared_path("pretrained", "yolov3-tiny.cfg"))
    assert (network.width, network.height, network.num_classes, network.backbone) == (416, 416, 80, "darknet_tiny")
    assert network.anchors == [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
    assert network.anchor_masks == [[3, 4, 5], [0, 1, 2]]  # as published; the weights were trained with 1,2,3
    assert [c.filters for c in network.convolutions][-3:] == [128, 256, 255]
    assert sum(network.parameter_counts()) == 8_858_734  # the file: 20-byte header + 4 bytes each
    assert shared_path("pretrained", "yolov3-tiny.weights").stat().st_size == 20 + 4 * 8_858_734


def custom_network(tmp_path, size=224):
    """A user's own YOLOv3-tiny: 2 classes, their anchors and masks, 224 px, random weights
    drawn by the numpy Darknet on a real photo; ``(cfg path, weights path, sections, photo)``."""
    sections = yolov3_tiny_cfg(1.0, 3 * (5 + 2))
    yolo = {"mask": "", "anchors": "12,16, 19,36, 40,28, 36,75, 76,55, 120,110", "classes": 2, "num": 6,
            "ignore_thresh": 0.7}
    masks = iter(["3,4,5", "0,1,2"])
    sections = [(k, {**yolo, "mask": next(masks)} if k == "yolo" else o) for k, o in sections]
    (tmp_path / "mine.cfg").write_text(cfg_text(sections, size))
    photo = letterboxed_photo("00001.jpg", size)
    _, params = darknet_forward(sections, photo / 255.0, np.random.default_rng(0))
    write_weights(tmp_path / "mine.weights", params)
    return tmp_path / "mine.cfg", tmp_path / "mine.weights", parse_cfg((tmp_path / "mine.cfg").read_text()), photo


def test_a_users_own_cfg_gives_darknets_detections(tmp_path):
    cfg, weights, sections, photo = custom_network(tmp_path)
    raw, _ = darknet_forward(sections, photo / 255.0, None, read_weights(weights, sections))
    options = [o for k, o in sections if k == "yolo"]
    everything = yolo_detections(raw, options, 224, 0.0, 0.45)
    threshold = float(everything[40][1])  # about 40 detections above it
    reference = yolo_detections(raw, options, 224, threshold, 0.45)
    (tmp_path / "mine.names").write_text("wallaby\nkangaroo\n")
    done, ours = predicted(tmp_path, photo, weights, threshold, "--class-names", tmp_path / "mine.names")
    assert "model.anchors [[12.0,16.0]" in done.stderr and "mine.cfg" in done.stderr  # one line says what replaced the recipe's
    assert_same_detections(ours, reference, threshold, category_ids=[1, 2])
    assert len(ours) > 20 and {o[0] for o in ours} == {1, 2}
    names = {r["category"] for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert names == {"wallaby", "kangaroo"}


def test_the_published_file_gives_darknets_detections_with_its_training_masks(tmp_path):
    weights = shared_path("pretrained", "yolov3-tiny.weights")
    sections = parse_cfg(shared_path("pretrained", "yolov3-tiny.cfg").read_text())
    photo = letterboxed_photo("00001.jpg", 416)
    raw, _ = darknet_forward(sections, photo / 255.0, None, read_weights(weights, sections))
    options = [o for k, o in sections if k == "yolo"]
    trained = [options[0], {**options[1], "mask": "1,2,3"}]
    done, ours = predicted(tmp_path, photo, weights, 0.2)
    assert "trained with mask = 1,2,3" in done.stderr
    from detectlab.data.class_names import COCO_CATEGORY_IDS

    assert_same_detections(ours, yolo_detections(raw, trained, 416, 0.2, 0.45), 0.2, COCO_CATEGORY_IDS)
    assert sum(1 for o in ours if o[0] == 1) == 2  # the two girls: person
    # the published .cfg's masks decode the 26x26 output against other anchors: other detections
    published = [(COCO_CATEGORY_IDS[k], p, *box) for k, p, *box in yolo_detections(raw, options, 416, 0.2, 0.45)]
    with pytest.raises(AssertionError):
        assert_same_detections(ours, [(k - 1, p, *b) for k, p, *b in published], 0.2, list(range(1, 81)))


def test_the_cfg_checks_the_file_and_the_recipe(tmp_path):
    cfg, weights, _, photo = custom_network(tmp_path, size=160)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "photo.png"), photo)
    data = weights.read_bytes()
    one_class = 4 * (3 * (512 + 1) + 3 * (256 + 1))  # bytes of one class in both outputs' convolutions
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-one_class])  # as a cut download would be: the size of a file with one class fewer
    (tmp_path / "cut.cfg").write_text(cfg.read_text())
    done = tool("tools/predict.py", "--config", TINY_RECIPE, "--weights", cut, "--images", images, "--out", tmp_path / "o")
    assert done.returncode == 1 and done.stderr.count("\n") <= 3, done.stderr
    assert "bytes, but cut.cfg describes" in done.stderr and f"{len(data) - one_class:,} bytes" in done.stderr
    # the same cut file without its .cfg: its layout is refused (a negative batch-norm variance), not loaded shifted
    (tmp_path / "cut.cfg").unlink()
    done = tool("tools/predict.py", "--config", TINY_RECIPE, "--set", "model.num_classes=2", "--weights", cut,
                "--images", images, "--out", tmp_path / "o")
    assert done.returncode == 1 and "does not follow this network's layout" in done.stderr, done.stderr
    # a recipe of another network, and a --set that contradicts the .cfg: one line each
    done = tool("tools/predict.py", "--config", ROOT / "models" / "yolov3_darknet53_coco416.yaml", "--weights", weights,
                "--images", images, "--out", tmp_path / "o")
    assert done.returncode == 2 and "darknet53" in done.stderr and "darknet_tiny" in done.stderr, done.stderr
    done = tool("tools/predict.py", "--config", TINY_RECIPE, "--set", "model.anchor_masks=[[3,4,5],[1,2,3]]",
                "--weights", weights, "--images", images, "--out", tmp_path / "o")
    assert done.returncode == 2 and "contradicts" in done.stderr and "mine.cfg" in done.stderr, done.stderr
    (tmp_path / "bad.cfg").write_text("[net]\nwidth=160\nheight=160\n[region]\nanchors=1,2\n")
    with pytest.raises(WeightsError, match=r"bad.cfg:4: section \[region\]"):
        read_darknet_cfg(tmp_path / "bad.cfg")


def test_convert_darknet_carries_the_network_into_the_h5(tmp_path):
    from detectlab.config import load_config
    from detectlab.models.loading import model_and_config

    cfg, weights, _, photo = custom_network(tmp_path, size=160)
    done = tool("tools/convert_darknet.py", "--config", TINY_RECIPE, "--weights", weights, "--out", tmp_path / "mine.h5",
                "--class-names", "wallaby,kangaroo")
    assert done.returncode == 0, done.stderr[-2000:]
    model, recipe, _ = model_and_config(load_config(TINY_RECIPE), str(tmp_path / "mine.h5"))
    assert recipe.model.anchors == [[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [120, 110]]
    assert recipe.model.anchor_masks == [[3, 4, 5], [0, 1, 2]] and recipe.model.image_size == 160
    assert model.class_names == ["wallaby", "kangaroo"]
    direct, _, _ = model_and_config(load_config(TINY_RECIPE), str(weights))
    np.testing.assert_array_equal(model.predict(photo[None], verbose=0)[1], direct.predict(photo[None], verbose=0)[1])


@pytest.mark.slow
def test_opencv_darknet_runtime_agrees(tmp_path):
    """OpenCV 4.x's Darknet importer (its own venv: OpenCV 5 dropped it) runs the user's .cfg
    and the published file; its decoded boxes, through Darknet's NMS (the numpy reference's,
    checked against detectlab above), are detectlab's detections."""
    import subprocess
    import venv

    from detectlab.data.class_names import COCO_CATEGORY_IDS

    cache = ROOT / ".venv-opencv4"
    python = cache / "bin" / "python"
    if not python.exists():
        venv.create(cache, with_pip=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "opencv-python-headless==4.10.0.84", "numpy<2"],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot install OpenCV 4.10 for its Darknet importer: {done.stderr.strip()[-200:]}")
    script = (  # OpenCV's forward pass and YOLO decoding: rows of cx, cy, w, h, objectness, class probabilities
        "import sys, cv2, numpy as np\n"
        "cfg, weights, image, size, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]\n"
        "net = cv2.dnn.readNetFromDarknet(cfg, weights)\n"
        "net.enableWinograd(False)\n"  # OpenCV's fast 3x3 convolutions round more than float32 needs
        "net.setInput(cv2.dnn.blobFromImage(cv2.imread(image), 1 / 255.0, (size, size), swapRB=True, crop=False))\n"
        "np.save(out, np.concatenate(net.forward(net.getUnconnectedOutLayersNames())))\n"
    )
    cfg, weights, sections, photo = custom_network(tmp_path)
    raw, _ = darknet_forward(sections, photo / 255.0, None, read_weights(weights, sections))
    threshold = float(yolo_detections(raw, [o for k, o in sections if k == "yolo"], 224, 0.0, 0.45)[40][1])
    # random weights, about 40 detections above the threshold; their batch norms have the small
    # variances where OpenCV's sqrt(var + 1e-6) parts most from Darknet's sqrt(var) + 1e-6: wider tolerances
    cases = [(cfg, weights, photo, 224, [1, 2], threshold, (2e-3, 0.3))]
    published = tmp_path / "published"
    published.mkdir()
    text = shared_path("pretrained", "yolov3-tiny.cfg").read_text()
    (published / "tiny.cfg").write_text(text.replace("mask = 0,1,2", "mask = 1,2,3"))  # the masks it was trained with
    cases.append((published / "tiny.cfg", shared_path("pretrained", "yolov3-tiny.weights"),
                  letterboxed_photo("00001.jpg", 416), 416, COCO_CATEGORY_IDS, 0.25, (1e-3, 0.1)))
    for k, (cfg_path, weights_path, image, size, ids, score, (score_tolerance, box_tolerance)) in enumerate(cases):
        folder = tmp_path / f"case{k}"
        folder.mkdir()
        cv2.imwrite(str(folder / "photo.png"), image[..., ::-1])
        done = subprocess.run([str(python), "-c", script, str(cfg_path), str(weights_path), str(folder / "photo.png"),
                               str(size), str(folder / "rows.npy")], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = np.load(folder / "rows.npy").astype(np.float64)
        runtime = nms_sort(rows[:, :4], rows[:, 5:], size, score, 0.45)
        _, ours = predicted(folder, image, weights_path, score, "--cfg", cfg_path)
        assert len(ours) > 3
        assert_same_detections(ours, runtime, score, ids, score_tolerance, box_tolerance)
