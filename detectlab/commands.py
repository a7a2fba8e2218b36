"""The ``detectlab`` command: ``detectlab train|evaluate|predict|export|convert|benchmark ...``.

Each sub-command runs the ``main()`` of the matching ``tools/*.py`` with the same flags. An
installed package carries the tools as ``detectlab.tools`` (``setup.py`` maps the ``tools/``
folder there); in a clone run without installing, they are read from ``tools/``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path

# sub-command -> tools/<file>.py
COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "export": "export",
    "convert": "convert_darknet",
    "benchmark": "benchmark",
    "summary": "summary",
    "kmeans-anchors": "kmeans_anchors",
}


def tool_module(stem: str):
    """The module of ``tools/<stem>.py``: installed as ``detectlab.tools.<stem>``, else from the clone."""
    try:
        return importlib.import_module(f"detectlab.tools.{stem}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("detectlab.tools", f"detectlab.tools.{stem}"):
            raise
    path = Path(__file__).resolve().parents[1] / "tools" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"detectlab_tool_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def usage() -> str:
    return "usage: detectlab {" + "|".join(COMMANDS) + "} [flags]  (detectlab COMMAND --help for its flags)"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"detectlab: error: unknown command '{name}'{hint} ({usage()})", file=sys.stderr)
        sys.exit(2)
    from detectlab.cli import run

    module = tool_module(COMMANDS[name])
    sys.argv = [f"detectlab {name}", *argv[1:]]
    run(module.main)
