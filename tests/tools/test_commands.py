"""The ``detectlab`` command: sub-commands run the tools with their flags, also after ``pip install``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import distributions

import pytest

from tests.conftest import ENV, INSTANT, ROOT


def detectlab(*args, cwd=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "detectlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env or {**ENV, "PYTHONPATH": str(ROOT)}, timeout=timeout)


def test_subcommands_take_the_tools_flags_and_errors_are_one_line():
    done = detectlab("export", "--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--weights", "--format", "--quantize", "--calibration"):
        assert flag in done.stdout
    unknown = detectlab("evalute")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "did you mean 'evaluate'" in unknown.stderr


def test_every_program_is_a_subcommand_with_its_own_help(capsys):
    """``detectlab NAME --help`` for every program of tools/ and datasets/ (in this process)."""
    from detectlab.commands import COMMANDS, main
    from tests.hostile.common import program

    programs = {p.stem for p in (ROOT / "tools").glob("*.py")} | {p.stem for p in (ROOT / "datasets").glob("*.py")}
    assert {stem for _, stem, _ in COMMANDS.values()} == programs - {"__init__", "_args"}
    flags = {"convert": "--from", "convert-darknet": "--num-classes", "split": "--val-ratio", "browse": "--augment",
             "shapes": "--size", "kmeans-anchors": "-k"}
    with pytest.raises(SystemExit) as listing:
        main(["--help"])
    listed = capsys.readouterr().out
    assert listing.value.code == 0 and all(f"  {name} " in listed for name in COMMANDS)
    for name in COMMANDS:
        code, out, _ = program(capsys, name, "--help")
        assert code == 0 and out.startswith(f"usage: detectlab {name} "), (name, out[:100])
        assert flags.get(name, "--") in out


def test_convert_is_the_dataset_converter(tmp_path):
    """``detectlab convert --from voc`` used to run the Darknet converter."""
    from tests.hostile.common import jpeg

    jpeg(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename><object><name>cat</name>"
                                                  "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    done = detectlab("convert", "--from", "voc", "--input", tmp_path, "--out", tmp_path / "voc.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tmp_path / 'voc.json'}: 1 images, 1 annotations, 1 categories (cat)"


@pytest.mark.slow
def test_console_script_trains_after_pip_install(tmp_path):
    """``pip install`` (into a --target folder, so the shared environment is untouched) puts a
    ``detectlab`` script, the tools and the dataset programs in the package; training and the
    dataset programs run outside the clone."""
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()  # a copy, so the build leaves nothing in the clone
    for name in ("setup.py", "README.md", "detectlab", "tools", "datasets"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "detectlab" / "tools" / "train.py").is_file()
    assert (target / "detectlab" / "datasets" / "convert.py").is_file()
    (entry,) = [ep for d in distributions(path=[str(target)]) if d.metadata["Name"] == "detectlab"
                for ep in d.entry_points if ep.group == "console_scripts"]
    assert (entry.name, entry.value) == ("detectlab", "detectlab.commands:main")
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(INSTANT / "yolov3_tiny_instant.yaml", work / "recipe.yaml")
    env = {**ENV, "PYTHONPATH": str(target)}
    done = subprocess.run([str(target / "bin" / "detectlab"), "train", "--config", "recipe.yaml", "--workdir", "run",
                           "--epochs", "1", "--steps-per-epoch", "1", "--val", "none", "--quiet"],
                          capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "run" / "checkpoints" / "last.keras").is_file()
    where = subprocess.run([sys.executable, "-c", "import detectlab; print(detectlab.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env)
    assert where.stdout.strip().startswith(str(target)), where.stdout  # the installed copy ran, not the clone
    shapes = subprocess.run([str(target / "bin" / "detectlab"), "shapes", "--out", "shapes", "--train", "4", "--val", "2",
                             "--size", "64"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert shapes.returncode == 0, shapes.stderr[-2000:]
    split = subprocess.run([str(target / "bin" / "detectlab"), "split", "--data", "shapes/instances_train.json",
                            "--val-ratio", "0.5", "--out-train", "a.json", "--out-val", "b.json"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert split.returncode == 0 and "a.json: " in split.stdout, split.stderr[-2000:]
    convert = subprocess.run([str(target / "bin" / "detectlab"), "convert", "--from", "coco", "--to", "yolo", "--input",
                              "a.json", "--out", "yolo"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert convert.returncode == 0 and (work / "yolo" / "data.yaml").is_file(), convert.stderr[-2000:]
