"""The ``detectlab`` command: ``detectlab COMMAND [flags]``, one sub-command per program in
``tools/`` and ``datasets/``, each with the program's own flags and ``--help``.

Each sub-command runs the ``main()`` of its program inside :func:`detectlab.cli.run` (one-line
errors, exit codes 1 and 2). An installed package carries the programs as ``detectlab.tools``
and ``detectlab.datasets`` (``setup.py`` maps the folders there); in a clone run without
installing, they are read from ``tools/`` and ``datasets/``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path

# sub-command -> (folder, program file stem, what it does)
COMMANDS = {
    "train": ("tools", "train", "train a detector from a recipe"),
    "evaluate": ("tools", "evaluate", "COCO / VOC metrics of a checkpoint, or of a results file (--gt --detections)"),
    "predict": ("tools", "predict", "detect in images, folders, videos and cameras"),
    "export": ("tools", "export", "SavedModel, TFLite or ONNX for serving"),
    "convert": ("datasets", "convert", "convert annotations: YOLO, LabelMe, CVAT, VOC, CSV, VIA <-> COCO"),
    "split": ("datasets", "split", "split a COCO file into train and val (stratified, seeded)"),
    "shapes": ("datasets", "shapes", "write the synthetic shapes dataset"),
    "browse": ("tools", "browse_dataset", "image grids of training samples, dataset statistics"),
    "convert-darknet": ("tools", "convert_darknet", "Darknet .weights or keras-yolo3 .h5 -> by-name .h5"),
    "kmeans-anchors": ("tools", "kmeans_anchors", "YOLO anchors for a dataset by k-means"),
    "summary": ("tools", "summary", "a model's layers and parameter counts"),
    "benchmark": ("tools", "benchmark", "training, loader and inference speed"),
    "peer-benchmark": ("tools", "peer_benchmark", "detectlab and TF Model Garden on the same work, interleaved"),
}


def tool_module(stem: str, folder: str = "tools"):
    """The module of ``<folder>/<stem>.py``: installed as ``detectlab.<folder>.<stem>``, else
    read from the clone (its folder on ``sys.path``, for the dataset programs' ``_args``)."""
    try:
        return importlib.import_module(f"detectlab.{folder}.{stem}")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"detectlab.{folder}", f"detectlab.{folder}.{stem}"):
            raise
    path = Path(__file__).resolve().parents[1] / folder / f"{stem}.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"detectlab_{folder}_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, _, summary) in COMMANDS.items()]
    return "usage: detectlab COMMAND [flags]   (detectlab COMMAND --help: its flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"detectlab: error: unknown command '{name}'{hint} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    from detectlab.cli import run

    folder, stem, _ = COMMANDS[name]
    module = tool_module(stem, folder)
    sys.argv = [f"detectlab {name}", *argv[1:]]
    run(module.main)
