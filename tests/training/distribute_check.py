"""Run by test_distribute.py in fresh processes (the CPU is split before TensorFlow starts).

    distribute_check.py RECIPE SHAPES|- OUT mirrored [KEY=VALUE ...]
        trains the recipe on one device, then on 2 mirrored logical CPU devices, each with the
        same global batch, and writes OUT/single.json, OUT/mirrored.json (+ .npz weights)
    distribute_check.py RECIPE SHAPES OUT worker [KEY=VALUE ...]
        trains as one worker of the TF_CONFIG cluster and writes OUT/worker<index>.json/.npz

Each result holds the per-batch logs of the run (a callback records them) and the final
weights, for the test to compare: named losses within float tolerance of the single device,
weights identical on every worker.
"""

import json
import sys
from pathlib import Path

import numpy as np

import detectlab  # noqa: F401
import keras

from detectlab.config import load_config
from detectlab.training import runner
from detectlab.training.devices import Cluster, leave_cluster, split_cpu

recipe, shapes, out, mode, *overrides = sys.argv[1:]
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
if mode == "mirrored":
    split_cpu(2)


class BatchLogs(keras.callbacks.Callback):
    """Every training batch's logs, in order."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)})


def run(name: str, distribute: str) -> None:
    recorder = BatchLogs()
    make_callbacks = runner.make_callbacks
    runner.make_callbacks = lambda *args, **kwargs: make_callbacks(*args, **kwargs) + [recorder]
    try:
        cfg = load_config(recipe, [f"train.distribute={distribute}", "train.mirrored_devices=2", *overrides])
        workdir = out / name
        workdir.mkdir(exist_ok=True)
        if shapes != "-" and not (workdir / "shapes").exists():  # "-": each run writes its own
            (workdir / "shapes").symlink_to(shapes)
        result = runner.train(cfg, workdir)
    finally:
        runner.make_callbacks = make_callbacks
    weights = result.model.get_weights()
    np.savez(out / f"{name}.npz", *weights)
    (out / f"{name}.json").write_text(json.dumps({"batches": recorder.batches, "history": result.history,
                                                  "replicas": result.model.distribute_strategy.num_replicas_in_sync}))


if mode == "mirrored":
    run("single", "none")
    run("mirrored", "mirrored")
else:
    run(f"worker{Cluster.from_environment().index}", "multi_worker")
print("DISTRIBUTE CHECK DONE", flush=True)
leave_cluster(0)
