"""tf.distribute on CPU: mirrored replicas on logical devices, and two worker processes."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENV, INSTANT, ROOT


def test_mirrored_step_equals_single_device_step(shapes_dir):
    script = Path(__file__).with_name("distribute_check.py")
    result = subprocess.run([sys.executable, str(script), str(INSTANT / "yolov3_tiny_instant.yaml"), str(shapes_dir)],
                            capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "MIRRORED OK" in result.stdout, result.stderr[-3000:]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_processes_train_together(tmp_path, shapes_dir):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        workdir = tmp_path / f"worker{index}"
        workdir.mkdir()
        (workdir / "shapes").symlink_to(shapes_dir)
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        args = [sys.executable, str(ROOT / "tools/train.py"), "--config", str(INSTANT / "yolov3_tiny_instant.yaml"),
                "--workdir", str(workdir), "--epochs", "2", "--quiet", "--set", "train.distribute=multi_worker"]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    chief = tmp_path / "worker0"
    state = json.loads((chief / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2  # the chief wrote checkpoints and logs
    assert not (tmp_path / "worker1" / "checkpoints").exists()  # the other worker did not
    assert "COCO AP50" in outputs[0][0]
    # each epoch's 6 batches (48 images / 8) are split between the workers: 3 steps per epoch
    code = "import detectlab, keras, sys; print(int(keras.saving.load_model(sys.argv[1]).optimizer.iterations.numpy()))"
    steps = subprocess.run([sys.executable, "-c", code, str(chief / "checkpoints" / "last.keras")], capture_output=True, text=True, env=ENV)
    assert steps.stdout.strip() == "6", steps.stderr[-2000:]
