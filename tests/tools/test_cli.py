"""The command-line tools as a user runs them (subprocesses)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ENV, INSTANT, ROOT, tool
from tests.evaluation.test_coco_eval import RESULTS, ground_truth

TINY = str(INSTANT / "yolov3_tiny_instant.yaml")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir", "w", "--epochs", "ten"], "train.py: error: argument --epochs: expected a positive integer, got 'ten' (see --help)"),
        (["--workdir", "w", "--precision", "half"], "argument --precision: invalid choice: 'half'"),
        (["--workdir", "w", "--bogus"], "train.py: error: unrecognized arguments: --bogus"),
        (["--workdir", "w", "--config", "nope.yaml"], "error: nope.yaml: config file not found"),
        (["--workdir", "w", "--config", TINY, "--set", "train.epoch=3"], "train.epoch: unknown key (did you mean 'epochs'?)"),
        (["--workdir", "w", "--config", TINY, "--data", "missing.json"], "error: missing.json: annotation file not found"),
        (["--workdir", "w", "--config", str(ROOT / "models/yolov3_darknet53_coco416.yaml"), "--epochs", "3"], "error: --epochs: the recipe trains in stages"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, args, message):
    result = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), *args], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert result.returncode in (1, 2), result.stderr  # 2: usage / config, 1: data
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_never_logged_monitor_stops_before_the_first_epoch_in_one_line(tmp_path, shapes_dir):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    result = tool("tools/train.py", "--config", TINY, "--workdir", tmp_path, "--set", "train.monitor=val_map50")
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.strip() and not l.startswith("[detectlab]")]  # log lines aside
    assert errors == ["error: train.monitor: 'val_map50' is never logged (did you mean 'val_AP50'?)"], result.stderr
    assert "Epoch 1" not in result.stdout + result.stderr and not (tmp_path / "checkpoints").exists()


def test_evaluate_scores_a_results_file(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    (tmp_path / "dt.json").write_text(json.dumps(RESULTS))
    result = tool("tools/evaluate.py", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "per_class", "voc_map50"}
    for name in ("m_per_class.csv", "m_pr_curves.png", "m_confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    bad = tool("tools/evaluate.py", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "none.json", "--out", tmp_path / "m.json")
    assert bad.returncode == 1 and bad.stderr.strip().endswith("none.json: detections file not found")


def test_evaluate_a_checkpoint_reproduces_the_run_metrics(trained_run, tmp_path):
    """Training's final evaluation (of best.keras) and its in-training COCO evaluation of that
    epoch print what tools/evaluate.py prints on best.keras."""
    run = trained_run.workdir
    result = tool("tools/evaluate.py", "--weights", run / "checkpoints" / "best.keras", "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    again = json.loads((tmp_path / "m.json").read_text())
    final = json.loads((run / "metrics.json").read_text())
    assert again["bbox"] == final["bbox"] and final["weights"] == "checkpoints/best.keras"
    epoch = json.loads((run / "checkpoints" / "state.json").read_text())["best_epoch"]
    assert final["epoch"] == epoch
    for name in ("AP", "AP50", "AP75"):
        assert trained_run.history[f"val_{name}"][epoch - 1] == again["bbox"][name], name
        assert f"{name}={again['bbox'][name]:.3f}" in result.stdout
    assert (tmp_path / "m_pr_curves.png").is_file() and (tmp_path / "m_confusion_matrix.png").is_file()


def test_predict_writes_pictures_and_results_with_class_names(trained_run, tmp_path):
    val = trained_run.workdir / "shapes" / "val"
    result = tool("tools/predict.py", "--weights", trained_run.workdir / "checkpoints" / "best.keras",
                  "--images", val / "000000.jpg", val / "000001.jpg", "--out", tmp_path, "--score", "0.001")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "000000.jpg").is_file() and (tmp_path / "000001.jpg").is_file()
    detections = json.loads((tmp_path / "results.json").read_text())
    assert detections and {d["category"] for d in detections} <= {"square", "circle", "triangle"}
    assert all(d["category_id"] == ["square", "circle", "triangle"].index(d["category"]) + 1 for d in detections)
    bad = tool("tools/predict.py", "--weights", trained_run.workdir / "checkpoints" / "best.keras", "--images", tmp_path / "nope.jpg", "--out", tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].endswith("nope.jpg: no such image or folder")


def test_trained_checkpoint_reloads_in_a_fresh_process_after_import_detectlab(trained_run):
    code = (
        "import detectlab, keras, sys\n"
        "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
        "print(type(m).__name__, type(m.optimizer).__name__, int(m.optimizer.iterations.numpy()), m.class_names)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(trained_run.workdir / "checkpoints" / "last.keras")],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["YoloV3", "FusedAdam", str(4 * 6), "['square',", "'circle',", "'triangle']"]


def test_summary_prints_reference_parameter_counts():
    result = tool("tools/summary.py", "--config", ROOT / "models/yolov3_darknet53_coco416.yaml", "--num-classes", "80")
    assert result.returncode == 0, result.stderr
    tail = result.stdout.strip().splitlines()[-3:]
    assert "Total params: 62,001,757" in tail[0]
    assert "Trainable params: 61,949,149" in tail[1]
    assert "Non-trainable params: 52,608" in tail[2]


def test_shapes_cli_writes_the_dataset(tmp_path):
    result = tool("datasets/shapes.py", "--out", tmp_path, "--train", "3", "--val", "2", "--size", "48")
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "instances_val.json").read_text())["images"]) == 2
    bad = tool("datasets/shapes.py", "--out", tmp_path, "--size", "8")
    assert bad.returncode == 2 and "--size: must be at least 32" in bad.stderr


def test_corrupt_image_in_a_worker_process_is_one_line(tmp_path, shapes_dir):
    data = tmp_path / "data"
    train_dir = data / "train"
    train_dir.mkdir(parents=True)
    (data / "instances_train.json").symlink_to(shapes_dir / "instances_train.json")
    for image in (shapes_dir / "train").iterdir():
        (train_dir / image.name).symlink_to(image)
    (train_dir / "000005.jpg").unlink()
    (train_dir / "000005.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    result = tool("tools/train.py", "--config", TINY, "--workdir", tmp_path / "run", "--data", data / "instances_train.json",
                  "--val", "none", "--workers", "2", "--set", "train.use_multiprocessing=true")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert lines == [f"error: {train_dir / '000005.jpg'}: truncated JPEG (no end-of-image marker): corrupt image "
                     "(set data.bad_images=skip to leave such images out)"], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, shapes_dir):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "shapes").symlink_to(shapes_dir)
    args = [sys.executable, str(ROOT / "tools/train.py"), "--config", TINY, "--workdir", str(workdir), "--epochs", "30", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    state = workdir / "checkpoints" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 2 <= done < 30
    result = tool("tools/train.py", "--workdir", workdir, "--resume", "--epochs", str(done + 1), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Epoch {done + 1}/{done + 1}" in result.stdout
    assert json.loads(state.read_text())["epoch"] == done + 1
    assert "COCO AP50 (mAP@0.5) of checkpoints/best.keras (epoch " in result.stdout
    assert "oneDNN" not in result.stderr  # TensorFlow's C++ chatter is not for the user
