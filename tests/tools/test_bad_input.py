"""Bad input and faults through the command-line tools, run in-process (``main(argv)``
inside ``detectlab.cli.run``, as the scripts do): each stops with exit code 1 (data) or 2
(recipe / flags) and one ``error:`` line naming the file or field, or is handled as the
message says."""

import errno
import importlib.util
import json
import logging
import zipfile

import pytest

from detectlab.cli import run
from tests.conftest import INSTANT, ROOT
from tests.data.test_bad_data import write_coco
from tests.evaluation.test_coco_eval import RESULTS, ground_truth

TINY = str(INSTANT / "yolov3_tiny_instant.yaml")
_TOOLS = {}


def tool_module(tool: str):
    """``tools/<tool>.py`` imported as a module (once)."""
    if tool not in _TOOLS:
        spec = importlib.util.spec_from_file_location(f"detectlab_tool_{tool}", ROOT / "tools" / f"{tool}.py")
        _TOOLS[tool] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_TOOLS[tool])
    return _TOOLS[tool]


def call(capsys, tool: str, *argv) -> tuple[int, str, list[str]]:
    """Run ``tools/<tool>.py`` with ``argv``: exit code, stdout, non-empty stderr lines."""
    tool_module(tool)
    capsys.readouterr()
    logger = logging.getLogger("detectlab")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    try:
        with pytest.raises(SystemExit) as exit_info:
            run(lambda: _TOOLS[tool].main([str(a) for a in argv]))
    finally:  # the handler run() installs writes to this test's captured stderr: drop it
        logger.handlers, logger.propagate, logger.level = handlers, propagate, level
    out = capsys.readouterr()
    return exit_info.value.code, out.out, [line for line in out.err.splitlines() if line.strip()]


def assert_one_line(result, code: int, line: str) -> None:
    """Exit ``code`` and ``line`` as the only error line (progress logs may come before)."""
    assert result[0] == code, result
    assert [l for l in result[2] if not l.startswith("[detectlab]")] == [f"error: {line}"], result[2]


# ------------------------------------------------------------------- recipe / flags


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-5", "train.lr: expected a positive number, got -5.0"),
        ("train.epochs=-1", "train.epochs: expected at least 1, got -1"),
        ("train.batch_size=0", "train.batch_size: expected at least 1, got 0"),
    ],
)
def test_out_of_range_recipe_values_stop_before_training(capsys, tmp_path, override, message):
    result = call(capsys, "train", "--config", TINY, "--workdir", tmp_path / "run", "--set", override)
    assert_one_line(result, 2, f"{TINY}: {message}")
    assert not (tmp_path / "run").exists()


def test_zero_batch_size_in_yaml(capsys, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"base: {TINY}\ntrain:\n  batch_size: 0\n")
    assert_one_line(call(capsys, "train", "--config", recipe, "--workdir", tmp_path / "run"), 2,
                    f"{recipe}: train.batch_size: expected at least 1, got 0")


def test_workdir_that_is_a_file(capsys, tmp_path):
    (tmp_path / "run").write_text("not a folder")
    assert_one_line(call(capsys, "train", "--config", TINY, "--workdir", tmp_path / "run"), 2,
                    f"--workdir {tmp_path / 'run'}: is a file, not a folder")


def test_own_data_without_val_is_validated_on_a_stated_share_of_itself_never_on_shapes():
    train_tool = tool_module("train")

    def overrides(*argv, fraction=0.0):
        args = train_tool.parse_args(["--config", TINY, "--workdir", "w", *argv])
        return train_tool.overrides_from_flags(args, False, fraction)

    assert overrides("--data", "mine.json")[-2:] == ["data.val=null", "data.val_fraction=0.1"]
    assert overrides("--data", "mine.json", fraction=0.25)[-1] == "data.val_fraction=0.25"  # --set data.val_fraction
    assert overrides("--data", "mine.json", "--val", "v.json")[-1] == "data.val=v.json"
    assert overrides("--data", "mine.json", "--val", "none")[-1] == "data.val=null"
    assert overrides("--data", "shapes")[-1] == "data.val=shapes"


# ------------------------------------------------------------------- broken data


def _duplicate_ids(root):
    path = write_coco(root)
    data = json.loads(path.read_text())
    data["images"][2]["id"] = data["images"][0]["id"]
    data["annotations"] = data["annotations"][:2]
    path.write_text(json.dumps(data))
    return path, "image id 100 is used twice: img0.jpg and img2.jpg"


def _annotation(change):
    def make(root):
        path = write_coco(root)
        data = json.loads(path.read_text())
        data["annotations"][1].update(change)
        path.write_text(json.dumps(data))
        return path, None

    return make


def _truncated(root):
    path = write_coco(root)
    image = root / "img1.jpg"
    image.write_bytes(image.read_bytes()[:-300])
    return image, "truncated JPEG (no end-of-image marker): corrupt image (set data.bad_images=skip to leave such images out)"


@pytest.mark.parametrize(
    "make, message",
    [
        (_duplicate_ids, None),
        (_truncated, None),
        (_annotation({"bbox": [5, 5, float("nan"), 10]}), "annotation 2 (img1.jpg): bbox [5, 5, nan, 10] has a NaN or infinite value (set data.invalid_boxes=skip to drop such boxes)"),
        (_annotation({"bbox": [5, float("inf"), 10, 10]}), "annotation 2 (img1.jpg): bbox [5, inf, 10, 10] has a NaN or infinite value (set data.invalid_boxes=skip to drop such boxes)"),
        (_annotation({"segmentation": [[5, 5, 15, 5, 15, 15, 5]]}), "annotation 2 (img1.jpg): segmentation polygon 0 has an odd number of coordinates (7): x and y must come in pairs"),
        (_annotation({"segmentation": [[5, 5, 15, 15]]}), "annotation 2 (img1.jpg): segmentation polygon 0 has 2 points; a polygon needs at least 3"),
    ],
    ids=["duplicate-ids", "truncated-jpeg", "nan-bbox", "inf-bbox", "odd-polygon", "two-point-polygon"],
)
def test_broken_data_stops_training_with_one_line(capsys, tmp_path, make, message):
    path, default = make(tmp_path / "data")
    result = call(capsys, "train", "--config", TINY, "--workdir", tmp_path / "run", "--data", tmp_path / "data" / "mine.json", "--val", "none")
    assert_one_line(result, 1, f"{path}: {message or default}")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------- evaluate.py --gt / --detections


@pytest.mark.parametrize(
    "gt_text, message",
    [
        (json.dumps([ground_truth()]), "expected a COCO object with images, annotations and categories"),
        (json.dumps({k: v for k, v in ground_truth().items() if k != "categories"}), "missing or invalid 'categories' list (not a COCO instances file?)"),
        ('{"images": [', "invalid JSON at line 1 column 13: Expecting value"),
    ],
    ids=["list", "no-categories", "malformed"],
)
def test_evaluate_with_a_bad_ground_truth_file(capsys, tmp_path, gt_text, message):
    (tmp_path / "gt.json").write_text(gt_text)
    (tmp_path / "dt.json").write_text(json.dumps(RESULTS))
    result = call(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json")
    assert_one_line(result, 1, f"{tmp_path / 'gt.json'}: {message}")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bbox": [12, 11, 29]}, "result 2: 'bbox' must be 4 numbers [x, y, w, h] with w, h >= 0, got [12, 11, 29]"),
        ({"score": "0.7"}, "result 2: 'score' must be a number, got '0.7'"),
    ],
)
def test_evaluate_with_bad_detections(capsys, tmp_path, change, message):
    results = [dict(r) for r in RESULTS]
    results[2].update(change)
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    result = call(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json")
    assert_one_line(result, 1, f"{tmp_path / 'dt.json'}: {message}")


# ------------------------------------------------------------------- with a trained model


def test_predict_writes_the_coco_files_ids_so_evaluate_can_score_them(capsys, tmp_path, trained_run):
    run_dir = trained_run.workdir
    val_json, val_images = run_dir / "shapes" / "instances_val.json", run_dir / "shapes" / "val"
    weights = run_dir / "checkpoints" / "best.keras"
    code, out, err = call(capsys, "predict", "--weights", weights, "--images", val_images, "--out", tmp_path / "p",
                        "--data", val_json, "--score", "0.01")
    assert code == 0 and f"image_id: the ids of {val_json}" in out, err
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    ids = {i["file_name"]: i["id"] for i in json.loads(val_json.read_text())["images"]}
    assert results and all(r["image_id"] == ids[f"val/{r['file_name'].rsplit('/', 1)[-1]}"] for r in results)
    code, out, _ = call(capsys, "evaluate", "--gt", val_json, "--detections", tmp_path / "p" / "results.json", "--out", tmp_path / "m.json")
    assert code == 0 and json.loads((tmp_path / "m.json").read_text())["bbox"]["AP50"] > 0

    code, out, _ = call(capsys, "predict", "--weights", weights, "--images", val_images / "000000.jpg", "--out", tmp_path / "q")
    assert code == 0 and "image_id: the position in the input list (pass --data COCO.json to write its image ids)" in out
    other = tmp_path / "other.jpg"
    other.write_bytes((val_images / "000000.jpg").read_bytes())
    assert_one_line(call(capsys, "predict", "--weights", weights, "--images", other, "--out", tmp_path / "q", "--data", val_json),
                    1, f"{val_json}: none of the 1 input images is one of its images (first tried: {other}; "
                    "file_names are matched by their last path components)")


def test_predict_on_a_folder_of_every_split_with_a_truncated_photo(capsys, tmp_path, trained_run, detectlab_log):
    """A user's photo folder holds the train and val images and one cut JPEG: ``--data val.json``
    predicts val's images only (the others counted); the cut file is one line naming it and
    ``data.bad_images``, or with it set, left out and named in the log."""
    run_dir = trained_run.workdir
    val_json, val_images = run_dir / "shapes" / "instances_val.json", run_dir / "shapes" / "val"
    weights = run_dir / "checkpoints" / "best.keras"
    photos = tmp_path / "photos"
    photos.mkdir()
    val_names = sorted(p.name for p in val_images.iterdir())[:2]
    for name in val_names:
        (photos / name).write_bytes((val_images / name).read_bytes())
    (photos / "train_0001.jpg").write_bytes((val_images / val_names[0]).read_bytes())
    cut = photos / "zz_cut.jpg"
    cut.write_bytes((val_images / val_names[1]).read_bytes()[:-300])
    assert_one_line(call(capsys, "predict", "--weights", weights, "--images", photos, "--out", tmp_path / "a"), 1,
                    f"{cut}: truncated JPEG (no end-of-image marker): corrupt image (set data.bad_images=skip to leave such images out)")
    code, out, _ = call(capsys, "predict", "--weights", weights, "--images", photos, "--out", tmp_path / "b",
                        "--set", "data.bad_images=skip")
    assert code == 0 and " detections in 3 images;" in out, out
    assert f"--images: skipped 1 of 4 images (data.bad_images=skip): {cut}: truncated JPEG" in detectlab_log.text
    code, out, _ = call(capsys, "predict", "--weights", weights, "--images", photos, "--out", tmp_path / "c",
                        "--data", val_json, "--score", "0.01")
    assert code == 0 and " detections in 2 images;" in out, out
    assert f"{val_json}: predicting its 2 images among the inputs; 2 other images left out" in detectlab_log.text
    ids = {i["file_name"].rsplit("/", 1)[-1]: i["id"] for i in json.loads(val_json.read_text())["images"]}
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert {r["file_name"] for r in results} <= {str(photos / n) for n in val_names}
    assert all(r["image_id"] == ids[r["file_name"].rsplit("/", 1)[-1]] for r in results)


def test_predict_finding_nothing_says_the_highest_score_and_the_flag_to_see_it(capsys, tmp_path, trained_run):
    weights = trained_run.workdir / "checkpoints" / "best.keras"
    image = trained_run.workdir / "shapes" / "val" / "000001.jpg"
    code, out, _ = call(capsys, "predict", "--weights", weights, "--images", image, "--out", tmp_path, "--score", "1")
    assert code == 0 and out.startswith("0 detections in 1 images")
    hint = next(line for line in out.splitlines() if line.startswith("nothing scored"))
    assert hint.startswith("nothing scored --score 1 or more; the highest score seen was ")
    suggested = hint.rsplit("--score ", 1)[1].split()[0]
    code, out, _ = call(capsys, "predict", "--weights", weights, "--images", image, "--out", tmp_path, "--score", suggested)
    assert code == 0 and not out.startswith("0 detections"), out


def test_evaluate_warns_when_the_checkpoint_has_other_class_names(capsys, tmp_path, trained_run, detectlab_log):
    shapes = trained_run.workdir / "shapes"
    data = json.loads((shapes / "instances_val.json").read_text())
    for category, name in zip(data["categories"], ("cat", "dog", "bird")):
        category["name"] = name
    renamed = shapes / "renamed_val.json"  # next to val/, as the original
    renamed.write_text(json.dumps(data))
    try:
        code, _, _ = call(capsys, "evaluate", "--weights", trained_run.workdir / "checkpoints" / "last.keras",
                          "--data", renamed, "--out", tmp_path / "m.json")
    finally:
        renamed.unlink()
    assert code == 0
    warnings = [m for m in detectlab_log.messages if "the classes differ" in m]
    assert len(warnings) == 1 and "square, circle, triangle" in warnings[0] and "cat, dog, bird" in warnings[0]


# ------------------------------------------------------------------- own data, resume, faults


@pytest.mark.slow  # three short runs (~1 min on 2 shared cores); each part also has a fast test
def test_own_data_validates_on_itself_resume_applies_lr_and_a_full_disk_keeps_the_last_checkpoint(
        capsys, tmp_path, shapes_dir, detectlab_log, monkeypatch):
    data = json.loads((shapes_dir / "instances_train.json").read_text())
    data["categories"] = [{"id": 1, "name": "blob"}]
    for ann in data["annotations"]:
        ann["category_id"] = 1
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(data))
    run_dir = tmp_path / "run"
    common = ["--workdir", run_dir, "--steps-per-epoch", "2"]

    # 1. --data without --val: validation is 10% of --data (5 of 48), never the shapes generator
    code, out, err = call(capsys, "train", "--config", TINY, *common, "--data", mine, "--images", shapes_dir, "--epochs", "1")
    assert code == 0, err
    assert f"validating on 5 images held out of {mine} (data.val_fraction=0.1, seed 0); pass --val to choose them" in detectlab_log.messages
    assert not (run_dir / "shapes").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["bbox"]["per_class"]) == ["blob"] and metrics["num_images"] == 5

    # 2. --resume --lr: the new rate is applied mid-stage, and said
    code, _, err = call(capsys, "train", *common, "--resume", "--epochs", "2", "--lr", "0.01", "--set", "eval.after_training=false")
    assert code == 0, err
    assert "learning rate changed on resume: 0.01 (the run had 0.003)" in detectlab_log.messages
    rows = (run_dir / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert float(rows[-1].split(",")[header.index("learning_rate")]) == pytest.approx(0.01)

    # 3. a full disk while writing the checkpoint: one line naming it; state.json and the last checkpoint stay
    checkpoints = run_dir / "checkpoints"
    state = (checkpoints / "state.json").read_text()
    (checkpoints / ".epoch_009.dead.tmp.keras").write_bytes(b"left by kill -9")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    result = call(capsys, "train", *common, "--resume", "--epochs", "3", "--set", "eval.after_training=false")
    monkeypatch.undo()
    assert_one_line(result, 1, f"{checkpoints / 'epoch_003.keras'}: cannot write the epoch 3 checkpoint: "
                               "No space left on device; epoch_002.keras and state.json are unchanged")
    assert (checkpoints / "state.json").read_text() == state
    assert not list(checkpoints.glob(".*tmp*")), list(checkpoints.iterdir())  # the kill -9 leftover is cleaned too
    assert "removed 1 unfinished checkpoint file(s) in " + str(checkpoints) in detectlab_log.messages
    with zipfile.ZipFile(checkpoints / "last.keras") as archive:
        assert "model.weights.h5" in archive.namelist()
