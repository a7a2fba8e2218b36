#!/usr/bin/env python
"""Benchmark training, data loading and inference; prints one JSON line per measurement.

    python tools/benchmark.py --config models/yolov3_darknet53_coco416.yaml --batch 2 \
        --precision float32 mixed_bfloat16 --loader-workers 2

Models are random-initialised; batches come from the family's real generator (augmented,
target-encoded) over synthetic JPEG files at the benchmark image size. MFU is
3 x forward FLOPs/image x images/s over the FLOP/s of a 2048^3 matmul in the same precision,
measured in the same run (the better of a measurement before and after the timed steps).
Inference is also timed through each export format (SavedModel, TFLite float32 / float16 /
int8 for YOLO, ONNX when tf2onnx is installed; ``--skip export`` leaves them out).
``conditions`` records the machine, whether its CPU has native bfloat16, and the share of CPU
time the host stole during the measurement (a noisy neighbour shows there, not as a slow model).

``--processes 1 2`` measures training through the real trainer (``fit`` or the alternating
loop) in 1, then 2 worker processes on this host (``MultiWorkerMirroredStrategy`` over
127.0.0.1, ``--batch`` images per replica, so the global batch grows with the workers), one
JSON line per count with the global images/s: on one host it shows what the collective costs.

The data loader is measured on the recipe's training pipeline (augmentations on, targets
encoded) in one process (``loader_images_per_s_per_worker``) and with ``--loader-workers``
processes; ``loader_headroom`` is one worker's rate over the training step's images/s (above
1: one loader process keeps up with the model).

``--profile DIR`` runs ``--profile-steps`` more training steps under the TensorFlow profiler
(a trace per precision in ``DIR/<family>_<precision>/``, for ``tensorboard --logdir DIR``
with the profile plugin) and prints the ops with the largest self time to stderr; the JSON
line gets them as ``profile``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, add_config_flags, load_cli_config, non_negative_int, positive_int, run  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="detectlab benchmark", prog="benchmark.py")
    add_config_flags(p)
    p.add_argument("--batch", type=positive_int, default=2)
    p.add_argument("--image-size", type=positive_int, help="default: the recipe's model.image_size")
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"],
                   choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--num-classes", type=positive_int, default=80)
    p.add_argument("--steps", type=positive_int, default=10, help="timed training steps (median reported)")
    p.add_argument("--warmup", type=positive_int, default=3)
    p.add_argument("--loader-workers", type=non_negative_int, default=2)
    p.add_argument("--loader-batches", type=positive_int, default=20)
    p.add_argument("--jit", action="store_true", help="XLA-compile the training step (default: the recipe's train.jit_compile)")
    p.add_argument("--skip", nargs="*", default=[], choices=["train", "loader", "inference", "export"])
    p.add_argument("--processes", type=positive_int, nargs="+",
                   help="training images/s with N worker processes on this host (e.g. 1 2); only this is measured")
    p.add_argument("--as-worker", type=positive_int, help=argparse.SUPPRESS)  # one process of --processes N
    p.add_argument("--profile", metavar="DIR", help="write a TensorFlow profiler trace of training steps to DIR "
                                                    "and print the top ops by self time")
    p.add_argument("--profile-steps", type=positive_int, default=3, help="training steps traced with --profile")
    p.add_argument("--top", type=positive_int, default=15, help="ops listed with --profile")
    args = p.parse_args()
    if args.profile and ("train" in args.skip or args.processes):
        p.error("--profile traces training steps in this process: it cannot be used with --skip train or --processes")
    if args.processes:
        return compare_processes(args)
    if args.as_worker:
        return scaling_worker(args)

    import keras

    from detectlab import benchmark as bench
    from detectlab.data.coco import load_coco
    from detectlab.data.shapes import write_shapes_dataset
    from detectlab.inference.predictor import Predictor
    from detectlab.registry import MODELS
    from detectlab.training.devices import set_precision
    from detectlab.training.optimizers import make_optimizer
    from detectlab.training.trainers import trainer_for
    from detectlab.training.runner import make_generators

    cfg = load_cli_config(args.config, args.overrides)
    size = args.image_size or cfg.model.image_size
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=size, num_classes=args.num_classes),
                              train=dataclasses.replace(cfg.train, batch_size=args.batch, workers=0))
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    tmp = tempfile.TemporaryDirectory()
    images = max(32, args.batch * (args.steps + args.warmup))
    paths = write_shapes_dataset(Path(tmp.name), train=images, val=0, size=size, seed=0)
    dataset = load_coco(paths["train"])
    generator, _ = make_generators(cfg, family, dataset, None, args.num_classes)
    common = {"model": cfg.model.family, "backbone": getattr(cfg.model, "backbone", None), "image_size": size, "batch": args.batch}

    loader = {}
    if "loader" not in args.skip:
        per_worker = bench.loader_rate(generator, args.loader_batches, 0)
        parallel = bench.loader_rate(generator, args.loader_batches * max(1, args.loader_workers), args.loader_workers) if args.loader_workers else per_worker
        loader = {"loader_images_per_s_per_worker": round(per_worker, 1), "loader_workers": args.loader_workers,
                  "loader_images_per_s": round(parallel, 1), "loader_augmented": cfg.augment.enabled}
    batches = [generator[i % len(generator)] for i in range(args.steps + args.warmup)]

    for precision in args.precision:
        precision = set_precision(precision)
        before = bench.cpu_times()
        keras.utils.set_random_seed(0)
        model = family.build(cfg, args.num_classes, None)
        jit = args.jit or cfg.train.jit_compile
        result = dict(common, precision=precision, jit_compile=jit)
        matmul_dtype = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[precision]
        peak = bench.matmul_flops_per_second(matmul_dtype)
        x = batches[0][0]
        trainer = trainer_for(family)
        flops = sum(bench.forward_flops(part, inputs) for part, inputs in trainer.flops_parts(model, x, cfg))
        if "train" not in args.skip:
            trainer.compile(model, lambda: make_optimizer(cfg.train, cfg.train.lr, 1000), jit_compile=jit)
            step_fn, loop = trainer.step_function(model, family, cfg, args.num_classes)
            times, busy = bench.timed_steps(step_fn, batches, args.warmup, args.steps)
            # the machine's speed drifts: take the better of two peak measurements (lower MFU)
            peak = max(peak, bench.matmul_flops_per_second(matmul_dtype))
            step = statistics.median(times)
            images_per_s = args.batch / step
            result.update(train_step_ms_median=round(step * 1000, 1), train_step_ms_min=round(min(times) * 1000, 1),
                          train_step_ms_max=round(max(times) * 1000, 1), proc_cores_busy=busy,
                          train_images_per_s=round(images_per_s, 3),
                          mfu=round(3 * flops * images_per_s / peak, 3))
            if loop is not None:  # share of the step outside the two views' training steps (ROI sampling, bookkeeping)
                result["outside_train_on_batch_share"] = round(float(statistics.median(loop.outside_shares)), 4)
            if loader:
                result["loader_headroom"] = round(loader["loader_images_per_s_per_worker"] / images_per_s, 2)
            if args.profile:
                trace = bench.profile_steps(step_fn, batches, Path(args.profile) / f"{cfg.model.family}_{precision}",
                                            args.profile_steps, args.warmup + args.steps)
                summary = bench.top_ops(bench.op_self_times(trace), args.profile_steps, args.top)
                print(bench.format_top_ops(summary, f"{cfg.model.family} {precision}, {trace}"), file=sys.stderr, flush=True)
                result["profile"] = {"trace": str(trace), "steps": args.profile_steps, **summary}
        result.update(forward_gflops_per_image=round(flops / 1e9, 2), matmul_tflops=round(peak / 1e12, 3))
        if "inference" not in args.skip:
            e = cfg.eval
            predictor = Predictor(model, size, cfg.predict.score_threshold, e.nms_threshold, e.max_detections, 1)
            result["inference_ms_per_image"] = round(bench.inference_ms_per_image(predictor, size), 1)
            if "export" not in args.skip and precision == "float32":  # exports are float32 graphs
                result.update(bench.export_ms_per_image(model, size, cfg.predict.score_threshold, e.nms_threshold,
                                                        e.max_detections))
        result.update(loader)
        result["conditions"] = dict(bench.conditions(), host_steal_share=bench.steal_share(before, bench.cpu_times()))
        print(json.dumps(result), flush=True)
    keras.mixed_precision.set_dtype_policy("float32")
    return 0


def compare_processes(args) -> int:
    """Run ``tools/benchmark.py --as-worker N`` in N processes for each N of ``--processes``;
    print the chief's JSON line for each."""
    from detectlab.errors import TrainingError

    argv = sys.argv[1:]
    cut = argv.index("--processes")
    rest = argv[:cut] + argv[cut + 1 + len(args.processes):]  # the same flags, without --processes N ...
    for n in args.processes:
        sockets = [socket.socket() for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
        for s in sockets:
            s.close()
        procs = []
        for index in range(n):
            env = dict(os.environ)
            if n > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
            procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *rest, "--as-worker", str(n)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outputs = [proc.communicate() for proc in procs]
        for proc, (out, err) in zip(procs, outputs):
            if proc.returncode != 0:
                raise TrainingError(f"benchmark with {n} processes: a worker failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
        print(outputs[0][0].strip(), flush=True)
    return 0


def scaling_worker(args) -> int:
    """One of ``args.as_worker`` processes: train ``--warmup + --steps`` steps of ``--batch``
    images per replica through the family's trainer; the chief prints the JSON line."""
    import keras

    from detectlab import benchmark as bench
    from detectlab.data.coco import load_coco
    from detectlab.data.shapes import write_shapes_dataset
    from detectlab.registry import MODELS
    from detectlab.training.devices import Cluster, finish_cluster, make_strategy, set_precision
    from detectlab.training.distributed import ReplicaLayout
    from detectlab.training.optimizers import make_optimizer
    from detectlab.training.runner import make_generators
    from detectlab.training.trainers import trainer_for

    workers = args.as_worker
    cfg = load_cli_config(args.config, args.overrides)
    size = args.image_size or cfg.model.image_size
    precision = set_precision(args.precision[0])
    strategy = make_strategy("multi_worker" if workers > 1 else "none", cluster_timeout=120)
    cluster = Cluster.from_environment() if workers > 1 else Cluster()
    layout = ReplicaLayout.of(strategy, cluster)
    steps = args.warmup + args.steps
    batch = args.batch * layout.replicas
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=size, num_classes=args.num_classes),
                              train=dataclasses.replace(cfg.train, batch_size=batch, workers=args.loader_workers,
                                                        use_multiprocessing=True, steps_per_epoch=steps,
                                                        jit_compile=args.jit and layout.replicas == 1))
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    tmp = tempfile.TemporaryDirectory()
    paths = write_shapes_dataset(Path(tmp.name), train=max(32, batch * steps), val=0, size=size, seed=0)
    generator, _ = make_generators(cfg, family, load_coco(paths["train"]), None, args.num_classes, layout)
    trainer = trainer_for(family)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = family.build(cfg, args.num_classes, None)
        trainer.compile(model, lambda: make_optimizer(cfg.train, cfg.train.lr, 1000), cfg.train.jit_compile)
    clock = bench.StepClock()
    trainer.fit(model, family, cfg, args.num_classes, generator, None, 1, 0, [clock], 0)
    step = statistics.median(clock.step_times(args.warmup))
    if cluster.chief:
        result = {"model": cfg.model.family, "backbone": getattr(cfg.model, "backbone", None), "image_size": size,
                  "precision": precision, "processes": workers, "replicas": layout.replicas,
                  "batch_per_replica": args.batch, "global_batch": batch, "train_step_ms_median": round(step * 1000, 1),
                  "train_images_per_s": round(batch / step, 3), "loader_workers_per_process": args.loader_workers,
                  "conditions": bench.conditions()}
        print(json.dumps(result), flush=True)
    finish_cluster(cluster, 120)  # the chief lets the others go; each process then leaves (cli.run)
    return 0


if __name__ == "__main__":
    run(main)
