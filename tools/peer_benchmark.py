#!/usr/bin/env python
"""detectlab against TF Model Garden on the same work, interleaved in one run.

    python tools/peer_benchmark.py --peer-python $PEER_TFM/bin/python \\
        --peer-script ../shared/peers/tfm_bench.py > acceptance.jsonl
    python3 ../shared/peers/table.py acceptance.jsonl

For each workload and precision the runs alternate Model Garden, detectlab, detectlab, Model
Garden (``--rounds`` repeats the four), each in a fresh process, so a machine whose speed
drifts affects both sides alike. stdout gets one JSON line per run in the peer harness's
format (``peer``, ``model``, ``size``, ``batch``, ``precision`` fp32/bf16, ``s_per_step``
median, ``img_per_s``, ``fwd_gflops_per_img``, ``status``, ...), first a same-run
``tf.matmul`` 2048^3 ``reference`` line, so the harness's ``table.py`` reads it. stderr gets
the comparison: mean images/s of each side, achieved training GFLOP/s (3 x forward FLOPs x
images/s) and their ratios against the acceptance targets.

The work is Model Garden's (the harness's ``tfm_bench.py``: batch 2, random weights, 80
classes): YOLOv3 Darknet-53 at 416 px (``models/yolov3_darknet53_coco416.yaml``), Mask R-CNN
and Faster R-CNN R50-FPN at 512 px with 1,000 training proposals, up to 512 ROIs per image
of which at most a quarter positive, ground-truth boxes among the proposals and (Mask R-CNN)
the mask head on up to 128 positive ROIs (``models/mask_rcnn_r50_fpn_coco.yaml``,
``models/faster_rcnn_r50_fpn_coco.yaml`` with ``--set`` overrides). Forward FLOPs are counted
the same way on both sides: 2 x multiply-adds of every convolution, transposed convolution and
matmul of the training-mode forward graph, per image. bf16 runs only where the CPU has native
bfloat16 (AVX512-BF16 or AMX), unless ``--precisions`` names it.

Only the standard library is imported here; each measurement is a child process
(``tools/benchmark.py`` for detectlab, the peer script in its own virtualenv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = {  # Model Garden workload -> detectlab recipe, image size, overrides that give the same work
    "yolov3": ("YOLOv3-Darknet53", "models/yolov3_darknet53_coco416.yaml", 416, []),
    "maskrcnn": ("MaskRCNN-ResNet50-FPN", "models/mask_rcnn_r50_fpn_coco.yaml", 512,
                 ["model.proposals_training=1000", "model.train_rois=512", "model.roi_positive_ratio=0.25",
                  "model.add_gt_as_proposals=true"]),
    "fasterrcnn": ("FasterRCNN-ResNet50-FPN", "models/faster_rcnn_r50_fpn_coco.yaml", 512,
                   ["model.proposals_training=1000", "model.train_rois=512", "model.roi_positive_ratio=0.25",
                    "model.add_gt_as_proposals=true"]),
}
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
# acceptance: (workload, precision) -> (measure, minimum ratio detectlab / Model Garden)
TARGETS = {("yolov3", "fp32"): ("img_per_s", 1.3), ("yolov3", "bf16"): ("img_per_s", 1.5),
           ("maskrcnn", "fp32"): ("train_gflops", 1.2), ("maskrcnn", "bf16"): ("train_gflops", 1.2),
           ("fasterrcnn", "fp32"): ("train_gflops", 1.2), ("fasterrcnn", "bf16"): ("train_gflops", 1.2)}


def main() -> int:
    prog = sys.argv[0] if sys.argv and sys.argv[0].startswith("detectlab ") else "peer_benchmark.py"  # as `detectlab peer-benchmark`
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog=prog)
    p.add_argument("--peer-python", required=True, help="python of the Model Garden virtualenv ($PEER_TFM/bin/python)")
    p.add_argument("--peer-script", required=True, help="the harness's tfm_bench.py")
    p.add_argument("--workloads", default="yolov3,maskrcnn,fasterrcnn", help="comma list from: " + ",".join(WORK))
    p.add_argument("--precisions", help="comma list from fp32,bf16 (default: fp32, and bf16 on a CPU with native bfloat16)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="repeats of Model Garden, detectlab, detectlab, Model Garden")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    args = p.parse_args()
    for path, flag in ((args.peer_python, "--peer-python"), (args.peer_script, "--peer-script")):
        if not Path(path).is_file():
            print(f"error: {flag} {path}: no such file", file=sys.stderr)
            return 2
    workloads = args.workloads.split(",")
    precisions = args.precisions.split(",") if args.precisions else None
    unknown = [w for w in workloads if w not in WORK] + [q for q in precisions or [] if q not in PRECISIONS]
    if unknown:
        print(f"error: unknown workload or precision {unknown[0]!r} (workloads: {', '.join(WORK)}; precisions: fp32, bf16)",
              file=sys.stderr)
        return 2

    matmul = reference()
    native = matmul.pop("cpu_native_bfloat16", False)
    emit(matmul)
    if precisions is None:
        precisions = ["fp32"] + (["bf16"] if native else [])
    runs = []
    for workload in workloads:
        peer_flops = None
        for precision in precisions:
            for _ in range(args.rounds):
                for side in ("peer", "detectlab", "detectlab", "peer"):
                    if side == "peer":
                        record = peer_run(args, workload, precision, count_flops=peer_flops is None)
                        if record.get("fwd_gflops_per_img") is not None:
                            peer_flops = record["fwd_gflops_per_img"]
                        elif peer_flops is not None and record.get("status") == "ok":
                            record["fwd_gflops_per_img"] = peer_flops
                            record["flops_note"] = "copied from the first run's count"
                    else:
                        record = detectlab_run(args, workload, precision)
                    emit(record)
                    runs.append((workload, precision, side, record))
    print(comparison(runs), file=sys.stderr)
    return 0


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def child(command: list[str], timeout: int) -> tuple[list[dict], str]:
    """JSON objects a child printed on stdout (lines starting with ``{``, or the harness's
    tagged lines), and the tail of its output for a failure message."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout} s"
    records = []
    for line in done.stdout.splitlines():
        text = line.partition("@@PEER_JSON@@ ")[2] if line.startswith("@@PEER_JSON@@ ") else line
        if text.startswith("{"):
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError:
                pass
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    return records, tail if done.returncode else ""


def reference() -> dict:
    """The same-run 2048^3 ``tf.matmul`` rate, fp32 and bf16, on detectlab's TensorFlow (and
    ``cpu_native_bfloat16``, which the caller takes out)."""
    code = ("import json, detectlab, tensorflow as tf; from detectlab.benchmark import matmul_flops_per_second as m; "
            "from detectlab.benchmark import conditions as c; "
            "print(json.dumps({'matmul2048_fp32_gflops': round(m('float32') / 1e9, 1), "
            "'matmul2048_bf16_gflops': round(m('bfloat16') / 1e9, 1), 'tf': tf.__version__, "
            "'cpu_native_bfloat16': c()['cpu_native_bfloat16'], 'cpu_flags': c()['cpu_flags']}))")
    records, error = child([sys.executable, "-c", code], 600)
    record = {"peer": "reference", "model": "tf.matmul 2048^3 (same run)"}
    if records:
        return {**record, **records[-1], "status": "ok"}
    return {**record, "status": "failed", "error": error or "no output"}


def peer_run(args, workload: str, precision: str, count_flops: bool) -> dict:
    command = [args.peer_python, args.peer_script, "--workloads", workload, "--precisions", precision, "--no-peak",
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--batch", str(args.batch),
               "--child-timeout", str(args.timeout)]
    if not count_flops:
        command.append("--no-flops")
    records, error = child(command, args.timeout + 60)
    if records:
        return records[-1]
    return {"peer": "Model Garden", "model": WORK[workload][0], "workload": workload, "precision": precision,
            "status": "failed", "error": error or "no output"}


def detectlab_run(args, workload: str, precision: str) -> dict:
    name, recipe, size, overrides = WORK[workload]
    command = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "--config", str(ROOT / recipe), "--image-size", str(size),
               "--batch", str(args.batch), "--precision", PRECISIONS[precision], "--num-classes", "80",
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--skip", "loader", "inference", "export"]
    for item in overrides:
        command += ["--set", item]
    records, error = child(command, args.timeout)
    record = {"peer": f"detectlab {version()}", "model": name, "workload": workload, "size": size, "batch": args.batch,
              "precision": precision, "recipe": recipe, "overrides": overrides}
    if not records or "train_step_ms_median" not in records[-1]:
        return {**record, "status": "failed", "error": error or "no measurement in the output"}
    out = records[-1]
    step = out["train_step_ms_median"] / 1000
    conditions = out.get("conditions", {})
    return {**record, "s_per_step": round(step, 4), "img_per_s": round(args.batch / step, 4),
            "s_per_step_min": round(out["train_step_ms_min"] / 1000, 4), "s_per_step_max": round(out["train_step_ms_max"] / 1000, 4),
            "timed_steps": args.steps, "fwd_gflops_per_img": out["forward_gflops_per_image"],
            "flops_method": "2*MACs of Conv/ConvTranspose/MatMul ops in the training-mode forward graph, at the shapes "
                            "they ran with, / batch", "jit_compile": out.get("jit_compile"),
            "keras_policy": out.get("precision"), "tf": conditions.get("tensorflow"), "cpu": conditions.get("cpu"),
            "cpu_flags": conditions.get("cpu_flags"), "proc_cores_busy": out.get("proc_cores_busy"), "host_steal_pct": _percent(conditions.get("host_steal_share")),
            "status": "ok"}


def version() -> str:
    try:
        described = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
        return described.stdout.strip() or "?"
    except OSError:
        return "?"


def _percent(share):
    return None if share is None else round(100 * share, 1)


def comparison(runs: list) -> str:
    """Markdown: per workload and precision, each side's mean images/s and achieved training
    GFLOP/s, the ratios and the target."""
    lines = ["| model | precision | Model Garden img/s | detectlab img/s | img/s ratio | Model Garden train GFLOP/s | "
             "detectlab train GFLOP/s | GFLOP/s ratio | target | met |", "|" + "---|" * 10]
    keys = list(dict.fromkeys((w, q) for w, q, _, _ in runs))
    for workload, precision in keys:
        sides = {}
        for side in ("peer", "detectlab"):
            ok = [r for w, q, s, r in runs if (w, q, s) == (workload, precision, side) and r.get("status") == "ok"]
            ips = statistics.mean(r["img_per_s"] for r in ok) if ok else None
            flops = next((r.get("fwd_gflops_per_img") for r in ok if r.get("fwd_gflops_per_img")), None)
            sides[side] = (ips, 3 * flops * ips if ips and flops else None)
        (peer_ips, peer_gf), (ours_ips, ours_gf) = sides["peer"], sides["detectlab"]
        measure, target = TARGETS[(workload, precision)]
        ratio_ips = ours_ips / peer_ips if ours_ips and peer_ips else None
        ratio_gf = ours_gf / peer_gf if ours_gf and peer_gf else None
        ratio = ratio_ips if measure == "img_per_s" else ratio_gf
        lines.append(f"| {WORK[workload][0]} | {precision} | {_fmt(peer_ips, 3)} | {_fmt(ours_ips, 3)} | {_fmt(ratio_ips, 2)}x | "
                     f"{_fmt(peer_gf, 0)} | {_fmt(ours_gf, 0)} | {_fmt(ratio_gf, 2)}x | {measure} >= {target}x | "
                     f"{'-' if ratio is None else ('yes' if ratio >= target else 'no')} |")
    return "\n".join(lines)


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
