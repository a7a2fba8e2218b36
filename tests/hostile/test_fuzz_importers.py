"""Seeded fuzz over every importer (YOLO, LabelMe, CVAT, VOC, CSV, VIA, COCO): valid files of
each format, random bytes and mutations (hostile numbers and paths, broken structure, other
encodings, cut files; see :mod:`tests.hostile.fuzz`), each converted with ``detectlab convert``
in a subprocess limited to 4 GB of address space. Every case must exit 0, 1 or 2 with one error
line (never a signal, never a traceback, never out of memory), write nothing outside its
folder and leave its input files as they were."""

from __future__ import annotations

import pytest

from tests.hostile.common import run_driver
from tests.hostile.fuzz import FORMATS, MUTATIONS


def fuzz(tmp_path, seed: int, seconds: float) -> list[dict]:
    neighbours = sorted(p.name for p in tmp_path.parent.iterdir())
    lines = run_driver(tmp_path, ["--fuzz", str(seed), "--seconds", str(seconds), "--root", str(tmp_path / "sandbox")],
                       timeout=int(seconds) + 240)
    results, summary = [line for line in lines if "code" in line], lines[-1]
    assert summary["done"] == len(results) >= len(FORMATS) * len(MUTATIONS), summary  # every mutation of every format
    problems = [r for r in results if r["code"] not in (0, 1, 2) or r["traceback"] or r["outside_writes"]
                or r["changed_inputs"] or (r["code"] != 0 and len(r["error_lines"]) != 1)
                or (r["code"] == 0 and r["error_lines"]) or any("out of memory" in e for e in r["error_lines"])]
    assert not problems, f"{len(problems)} of {len(results)} cases (seed {seed}): {problems[:3]}"
    assert summary["maxrss_mb"] < 4096
    assert not list((tmp_path / "outside").iterdir())  # where hostile absolute paths point
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == neighbours
    assert {p.name for p in tmp_path.iterdir()} <= {"sandbox", "outside", "mpl", "keras"}
    for fmt in FORMATS:  # the fuzz is not vacuous: each format both converts and is refused
        codes = {r["code"] for r in results if r["id"].split("-")[1] == fmt}
        assert 0 in codes and 1 in codes, (fmt, codes)
    return results


def test_fuzzed_importers_exit_cleanly(tmp_path):
    fuzz(tmp_path, seed=0, seconds=15)


@pytest.mark.slow
def test_fuzzed_importers_exit_cleanly_for_a_minute(tmp_path):
    fuzz(tmp_path, seed=1, seconds=50)
