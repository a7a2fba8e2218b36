"""Helpers of the hostile-input tests: run a program as ``detectlab COMMAND`` (in this process,
or many in a memory-limited subprocess through :mod:`tests.hostile.driver`), check its one
error line, and check what it wrote."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectlab.cli import run
from detectlab.commands import COMMANDS, tool_module
from tests.conftest import ENV, ROOT

MEMORY_LIMIT = 4 << 30  # bytes of address space for the driver subprocess
DRIVER = ROOT / "tests" / "hostile" / "driver.py"


def program(capsys, command: str, *argv) -> tuple[int, str, list[str]]:
    """Run ``detectlab COMMAND argv...`` in this process: exit code, stdout, non-log stderr lines."""
    folder, stem, _ = COMMANDS[command]
    module = tool_module(stem, folder)
    capsys.readouterr()
    logger = logging.getLogger("detectlab")
    handlers, propagate, level, argv0 = logger.handlers[:], logger.propagate, logger.level, sys.argv
    sys.argv = [f"detectlab {command}", *map(str, argv)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            run(module.main)
    finally:  # the handler run() installs writes to this test's captured stderr: drop it
        logger.handlers, logger.propagate, logger.level, sys.argv = handlers, propagate, level, argv0
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip() and not line.startswith("[detectlab]")]
    return exit_info.value.code, out.out, lines


def assert_one_line(result, code: int, *parts: str) -> str:
    """Exit ``code`` and exactly one ``error:`` line holding every one of ``parts``; the line."""
    got_code, _, lines = result[:3] if isinstance(result, tuple) else (result["code"], None, result["error_lines"])
    assert got_code == code, result
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """``{path: sha1}`` of every file under ``folder`` (symlinks by their target text)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_symlink():
            out[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def assert_writes(root: Path, before: dict[str, str], allowed: list[Path] = ()) -> list[str]:
    """Every file of ``before`` (a :func:`snapshot` of ``root``) has its bytes, and new files
    appeared only under ``allowed`` folders; returns the new files."""
    after = snapshot(root)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"inputs changed or removed: {changed}"
    new = [p for p in after if p not in before]
    outside = [p for p in new if not any(Path(p).is_relative_to(a) for a in allowed)]
    assert not outside, f"written outside {list(map(str, allowed))}: {outside}"
    return new


def run_driver(tmp_path: Path, args: list[str], prefix: list[str] = (), timeout: int = 300) -> list[dict]:
    """Start the driver with ``args`` in a subprocess limited to :data:`MEMORY_LIMIT` of address
    space; its JSON report lines. A case that killed it (a signal) fails here, named."""
    env = {**ENV, "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": str(tmp_path / "mpl"), "KERAS_HOME": str(tmp_path / "keras")}

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    done = subprocess.run([*prefix, sys.executable, str(DRIVER), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, preexec_fn=limit, stdin=subprocess.DEVNULL)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    started = [line["start"] for line in lines if "start" in line]
    assert done.returncode == 0, (f"the driver ended with {done.returncode} (a negative code is a signal) "
                                  f"during case {started[-1] if started else None}: {done.stderr[-3000:]}")
    return lines


def run_cases(tmp_path: Path, cases: list[dict], prefix: list[str] = ()) -> dict[str, dict]:
    """Each case's report, by id (see :mod:`tests.hostile.driver`)."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    return {line["id"]: line for line in run_driver(tmp_path, ["--cases", str(path)], prefix) if "code" in line}


def jpeg(path: Path, width: int = 64, height: int = 48, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def jpeg_base64(width: int = 64, height: int = 48) -> str:
    return base64.b64encode(cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes()).decode()


def labelme(folder: Path, shapes: list, image_path: str = "a.jpg", image_data: str | None = None,
            name: str = "a.json", size: tuple[int, int] = (64, 48)) -> Path:
    """A LabelMe JSON ``folder/name`` (written as LabelMe writes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.0", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": image_data,
           "imageWidth": size[0], "imageHeight": size[1]}
    (folder / name).write_text(json.dumps(doc))
    return folder / name


def shape(points, label: str = "cat", kind: str = "polygon") -> dict:
    return {"label": label, "points": points, "shape_type": kind, "group_id": None, "flags": {}}


def cvat_xml(path: Path, images: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><labels>'
                    "<label><name>cat</name></label></labels></task></meta>" + images + "</annotations>\n")
    return path
