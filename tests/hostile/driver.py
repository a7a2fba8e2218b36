"""Run detectlab programs on hostile input in one process, as ``detectlab COMMAND`` runs them.

The hostile-input tests start this script in a subprocess with a 4 GB address-space limit
(``RLIMIT_AS``), so a crash (a signal) or a memory blow-up cannot take the test session down,
and read its report::

    python tests/hostile/driver.py --cases CASES.json     # [{"id", "command", "argv", "cwd", "allowed"}]
    python tests/hostile/driver.py --fuzz SEED --seconds 20 --root DIR   # cases from fuzz.py

Before each case it prints ``{"start": id}``, after it one JSON line: ``id``, ``code`` (the exit
code ``detectlab.cli.run`` gives), ``error_lines`` (stderr lines that are not log lines),
``traceback`` (an exception escaped, or "Traceback" was printed), ``outside_writes`` (files
opened for writing, created, moved or removed outside the case's ``allowed`` folders, seen by
a ``sys.addaudithook`` hook) and ``changed_inputs`` (files under ``cwd`` whose bytes changed).
The last line is ``{"done": n, "maxrss_mb": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True

import detectlab  # noqa: E402,F401  (TensorFlow and every registration, before the hook)
from detectlab.cli import run  # noqa: E402
from detectlab.commands import COMMANDS, tool_module  # noqa: E402

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_allowed: list[str] = []
_outside: list[str] = []


def _audit(event: str, args) -> None:
    """Record writes outside the current case's allowed folders."""
    if not _allowed:
        return
    paths = []
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        paths = [path] if writes else []
    elif event in ("os.rename", "os.link", "os.symlink", "shutil.copyfile", "shutil.copytree", "shutil.move"):
        paths = list(args[:2])
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.chown", "shutil.rmtree"):
        paths = list(args[:1])
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(path))
            if not any(full == a or full.startswith(a + os.sep) for a in _allowed) and not full.startswith("/dev/"):
                _outside.append(full)


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def run_case(case: dict, programs: dict) -> dict:
    """One program run: its exit code, error lines, traceback, writes outside, changed inputs."""
    cwd = Path(case["cwd"])
    before = _hashes(cwd)
    _allowed[:] = [os.path.abspath(a) for a in case["allowed"]]
    _outside.clear()
    folder, stem, _ = COMMANDS[case["command"]]
    module = programs.setdefault(case["command"], tool_module(stem, folder))
    stderr, escaped = io.StringIO(), None
    logger = logging.getLogger("detectlab")
    logger.handlers.clear()  # run() installs a handler on the stderr of this case
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = [f"detectlab {case['command']}", *case["argv"]]
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                run(module.main)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            except BaseException as exc:  # noqa: BLE001  (reported: the test fails on it)
                code, escaped = None, "".join(traceback.format_exception(exc))[-3000:]
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        _allowed.clear()
        logger.handlers.clear()
    text = stderr.getvalue()
    after = _hashes(cwd)
    return {
        "id": case["id"],
        "code": code,
        "error_lines": [l for l in text.splitlines() if l.strip() and not l.startswith("[detectlab]")],
        "log": [l for l in text.splitlines() if l.startswith("[detectlab]")][-5:],
        "traceback": escaped or ("Traceback" in text and text[-3000:]) or None,
        "outside_writes": sorted(set(_outside)),
        "changed_inputs": sorted(p for p, h in before.items() if after.get(p) != h),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases")
    p.add_argument("--fuzz", type=int)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--root")
    args = p.parse_args()
    if args.cases:
        cases = iter(json.loads(Path(args.cases).read_text()))
        deadline = None
    else:
        from tests.hostile.fuzz import fuzz_cases

        cases = fuzz_cases(args.fuzz, Path(args.root))
        deadline = time.monotonic() + args.seconds
    sys.addaudithook(_audit)
    programs: dict = {}
    done = 0
    for case in cases:
        if deadline is not None and time.monotonic() > deadline:
            break
        print(json.dumps({"start": case["id"]}), flush=True)
        print(json.dumps(run_case(case, programs)), flush=True)
        done += 1
    print(json.dumps({"done": done, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()
