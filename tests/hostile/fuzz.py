"""Seeded fuzz cases for every importer: valid files of each format, then random bytes and
mutations (hostile numbers, hostile paths, broken structure, other encodings, cut files).

``fuzz_cases(seed, root)`` yields cases for :mod:`tests.hostile.driver`, round-robin over the
formats; case ``k`` of a seed is always the same files (``random.Random((seed, k))``). Each
case is a folder ``root/case_NNNNN`` holding the dataset and an ``out`` folder; absolute
hostile paths point into ``root.parent / "outside"`` (which must stay empty).
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
from pathlib import Path

import cv2
import numpy as np

FORMATS = ("yolo", "labelme", "cvat", "voc", "csv", "via", "coco")
HOSTILE_NUMBERS = ("1e8", "-1e8", "1e400", "-1e400", "NaN", "nan", "inf", "-inf", "1e308", "-1e308", "0", "-1",
                   "1e-320", "123456789012345678901234567890", "abc", "", "0x10", "1,5", "9" * 400)
HOSTILE_JSON = (None, True, 5, -1, 1e308, -1e308, "x", "", [], {}, [[1e8, 1e8]], [[1, 2, 3]], {"a": [1]},
                "../../escaped.jpg", ".", "/", "a\u0000b.jpg", "/dev/zero", [0] * 1000, [[[[[[[[[[1]]]]]]]]]])
MUTATIONS = ("valid", "random_bytes", "truncate", "flip_bytes", "utf16", "numbers", "structure", "paths")


def _jpeg(rng: random.Random, w: int = 64, h: int = 48) -> bytes:
    image = np.full((h, w, 3), rng.randrange(256), np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def fuzz_cases(seed: int, root: Path):
    """Endless cases; the driver stops at its time budget."""
    root.mkdir(parents=True, exist_ok=True)
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    k = 0
    while True:
        rng = random.Random(f"{seed}-{k}")
        fmt = FORMATS[k % len(FORMATS)]
        mutation = MUTATIONS[(k // len(FORMATS)) % len(MUTATIONS)] if k < 2 * len(FORMATS) * len(MUTATIONS) \
            else rng.choice(MUTATIONS)
        case = root / f"case_{k:05d}"
        case.mkdir()
        (case / "out").mkdir()
        argv = BUILD[fmt](case, rng, mutation, outside)
        yield {"id": f"{k:05d}-{fmt}-{mutation}", "command": "convert", "argv": argv, "cwd": str(case),
               "allowed": [str(case)]}
        k += 1


# ------------------------------------------------------------------- mutations of a file's text

def _mutate_text(text: str, rng: random.Random, mutation: str, outside: Path, path_keys=()) -> bytes:
    """``text`` mutated by ``mutation`` (``structure``/``paths`` on JSON; numbers everywhere)."""
    if mutation == "random_bytes":
        return rng.randbytes(rng.choice((0, 1, 7, 100, 3000)))
    data = text.encode()
    if mutation == "truncate":
        return data[: rng.randrange(len(data) + 1)]
    if mutation == "flip_bytes":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if mutation == "utf16":
        return text.encode(rng.choice(("utf-16", "utf-16-le", "utf-32", "latin-1")), errors="replace")
    if mutation == "numbers":
        numbers = list(re.finditer(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text))
        for match in rng.sample(numbers, min(len(numbers), rng.randint(1, 3))):
            value = rng.choice(HOSTILE_NUMBERS)
            text = text[: match.start()] + value + text[match.end():] if len(value) == len(match.group()) else \
                text.replace(match.group(), value, 1)
        return text.encode()
    if mutation in ("structure", "paths"):
        try:
            doc = json.loads(text)
        except ValueError:
            return _mutate_text(text, rng, "numbers", outside)
        for _ in range(rng.randint(1, 3)):
            doc = _mutate_json(doc, rng, outside, path_keys if mutation == "paths" else ())
        return json.dumps(doc).encode()
    return data


def _hostile_path(rng: random.Random, outside: Path) -> str:
    return rng.choice(("../../escaped.jpg", "../x/../../escaped.png", str(outside / "abs.jpg"), str(outside / "run.sh"),
                       ".", "", "sub/../../../escaped.jpg", "a\u0000b.jpg", "/dev/zero", "con:aux.jpg", "..\\..\\win.jpg"))


def _mutate_json(doc, rng: random.Random, outside: Path, path_keys):
    """Replace one random node (or, for ``path_keys``, a path value) with a hostile value."""
    nodes = []

    def walk(node, parent, key):
        nodes.append((parent, key, node))
        if isinstance(node, dict):
            for k, v in list(node.items()):
                walk(v, node, k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, node, i)

    walk(doc, None, None)
    paths = [(p, k) for p, k, _ in nodes if k in path_keys]
    if paths:
        parent, key = rng.choice(paths)
        parent[key] = _hostile_path(rng, outside)
        return doc
    parent, key, node = rng.choice(nodes)
    value = copy.deepcopy(rng.choice(HOSTILE_JSON))  # never one object in two places (no cycles)
    if parent is None:
        return value
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[key]
    elif isinstance(parent, list) and rng.random() < 0.2:
        parent.append(copy.deepcopy(node))  # an entry listed twice
    else:
        parent[key] = value
    return doc


def _write(path: Path, text: str, rng, mutation, outside, path_keys=()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_mutate_text(text, rng, mutation, outside, path_keys))


def _mutated_xml(text: str, rng, mutation, outside) -> tuple[str, str]:
    """XML text with attribute / element values replaced (``structure`` and ``paths`` on XML)."""
    if mutation == "paths":
        return re.sub(r'name="[^"]*\.jpg"|<filename>[^<]*</filename>', lambda m: m.group().replace(
            m.group().split('"')[1] if '"' in m.group() else m.group()[10:-11], _hostile_path(rng, outside)), text), "valid"
    if mutation == "structure":
        pieces = re.split(r"(<[^>]+>)", text)
        tags = [i for i, p in enumerate(pieces) if p.startswith("<") and not p.startswith("<?")]
        for i in rng.sample(tags, min(len(tags), rng.randint(1, 3))):
            pieces[i] = rng.choice(("", pieces[i] * 2, "<track id='0' label='a'><box frame='0' xtl='1' ytl='1' xbr='5' ybr='5'/></track>",
                                    '<polygon label="a" points="1,1;1e8,1;5,1e400"/>', '<ellipse label="a" cx="5" cy="5" rx="1e300" ry="2"/>',
                                    '<box label="a" xtl="1" ytl="1" xbr="9" ybr="9" rotation="abc"/>', "<!DOCTYPE x [<!ENTITY a 'aaaa'>]>"))
        return "".join(pieces), "valid"
    return text, mutation


# ------------------------------------------------------------------- one valid dataset per format

def _yolo(case: Path, rng, mutation, outside) -> list[str]:
    (case / "images").mkdir()
    (case / "images" / "a.jpg").write_bytes(_jpeg(rng))
    (case / "images" / "b.png").write_bytes(cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))[1].tobytes())
    target = rng.choice(("labels/a.txt", "classes.txt", "data.yaml"))
    files = {
        "labels/a.txt": "0 0.5 0.5 0.2 0.3\n1 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n",
        "labels/b.txt": "1 0.25 0.5 0.5 0.5\n",
        "classes.txt": "cat\ndog\n",
        "data.yaml": "path: .\ntrain: images\nval: images\nnames: {0: cat, 1: dog}\n",
    }
    if mutation == "structure" and target == "data.yaml":
        files["data.yaml"] = rng.choice((
            "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
            "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n"
            "g: &g [*f, *f, *f, *f, *f, *f, *f, *f]\nnames: *g\ntrain: images\n",
            "train: !!python/object/apply:os.system ['echo hi']\nnames: [a]\n", "[" * 3000, "train: " + str(outside) + "\nnames: [a]\n",
            "train: ../../..\nnames: [a]\n", "names: {0: a, x: b}\ntrain: images\n", "train: [images, images]\nnames: [a, b]\n"))
        mutation = "valid"
    for name, text in files.items():
        _write(case / name, text, rng, mutation if name == target else "valid", outside)
    source = "data.yaml" if target == "data.yaml" or rng.random() < 0.3 else "."
    if source == ".":
        (case / "data.yaml").unlink()
    return ["--from", "yolo", "--input", source, "--out", "out/out.json"]


def _labelme(case: Path, rng, mutation, outside) -> list[str]:
    (case / "ds").mkdir()
    jpeg = _jpeg(rng)
    embedded = rng.random() < 0.5
    if not embedded:
        (case / "ds" / "a.jpg").write_bytes(jpeg)
    doc = {"version": "5.0", "flags": {}, "imagePath": "a.jpg", "imageData": base64.b64encode(jpeg).decode() if embedded else None,
           "imageHeight": 48, "imageWidth": 64, "shapes": [
               {"label": "cat", "points": [[2, 3], [30, 3], [30, 20], [2, 20]], "shape_type": "polygon", "group_id": None},
               {"label": "dog", "points": [[40, 10], [60, 40]], "shape_type": "rectangle", "group_id": 1},
               {"label": "dog", "points": [[20, 30], [25, 30]], "shape_type": "circle", "group_id": None},
               {"label": "x", "points": [[1, 1], [5, 5]], "shape_type": "line", "group_id": None}]}
    if mutation == "paths" and embedded and rng.random() < 0.5:
        doc["imageData"] = base64.b64encode(rng.choice((b"#!/bin/sh\necho pwned\n", jpeg))).decode()
    _write(case / "ds" / "a.json", json.dumps(doc), rng, mutation, outside, ("imagePath",))
    return ["--from", "labelme", "--input", "ds", "--out", "out/out.json"]


def _cvat(case: Path, rng, mutation, outside) -> list[str]:
    (case / "a.jpg").write_bytes(_jpeg(rng))
    text = ('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><labels>'
            '<label><name>cat</name></label><label><name>dog</name></label></labels></task></meta>\n'
            '<image id="0" name="a.jpg" width="64" height="48">'
            '<box label="cat" occluded="0" xtl="2" ytl="3" xbr="30" ybr="20" rotation="10"><attribute name="color">red</attribute></box>'
            '<box label="dog" occluded="1" xtl="40" ytl="10" xbr="60" ybr="40"/>'
            '<polygon label="dog" occluded="0" points="5,5;20,5;20,25;5,25"/>'
            '<ellipse label="cat" cx="30" cy="30" rx="5" ry="3"/><polyline label="cat" points="1,1;3,3"/></image>\n'
            '</annotations>\n')
    text, mutation = _mutated_xml(text, rng, mutation, outside)
    _write(case / "a.xml", text, rng, mutation if mutation not in ("structure", "paths") else "numbers", outside)
    return ["--from", "cvat", "--input", "a.xml", "--out", "out/out.json"]


def _voc(case: Path, rng, mutation, outside) -> list[str]:
    (case / "JPEGImages").mkdir()
    (case / "JPEGImages" / "a.jpg").write_bytes(_jpeg(rng))
    text = ("<annotation><folder>VOC</folder><filename>a.jpg</filename><path>/nowhere/a.jpg</path>"
            "<size><width>64</width><height>48</height><depth>3</depth></size>"
            "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>"
            "<object><name>dog</name><difficult>1</difficult><bndbox><xmin>40</xmin><ymin>10</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object>"
            "</annotation>\n")
    text, mutation = _mutated_xml(text, rng, mutation, outside)
    _write(case / "Annotations" / "a.xml", text, rng, mutation if mutation not in ("structure", "paths") else "numbers", outside)
    split = rng.random() < 0.3
    if split:
        _write(case / "ImageSets" / "Main" / "train.txt", "a\n", rng, rng.choice(("valid", "random_bytes", "utf16")), outside)
    return ["--from", "voc", "--input", ".", "--out", "out/out.json"] + (["--split", "train"] if split else [])


def _csv(case: Path, rng, mutation, outside) -> list[str]:
    (case / "a.jpg").write_bytes(_jpeg(rng))
    (case / "b.jpg").write_bytes(_jpeg(rng, 32, 32))
    text = "a.jpg,2,3,30,20,cat\na.jpg,40,10,64,48,dog\nb.jpg,,,,,\n# comment\nb.jpg,1,1,31,31,\"cat\"\n"
    if mutation == "paths":
        text = text.replace("b.jpg", _hostile_path(rng, outside).replace(",", "_"), 1)
        mutation = "valid"
    elif mutation == "structure":
        text = rng.choice((text + "a.jpg,1,2,3\n", text + '"unclosed,1,2,3,4,cat\n', text + "x" * 200000 + ",1,1,2,2,a\n",
                           text.replace(",", ";"), "path,x1,y1,x2,y2,class_name\n" + text))
        mutation = "valid"
    _write(case / "a.csv", text, rng, mutation, outside)
    return ["--from", "csv", "--input", "a.csv", "--out", "out/out.json"]


def _via(case: Path, rng, mutation, outside) -> list[str]:
    (case / "a.jpg").write_bytes(_jpeg(rng))
    doc = {"a.jpg1234": {"filename": "a.jpg", "size": 1234, "file_attributes": {}, "regions": [
        {"shape_attributes": {"name": "polygon", "all_points_x": [2, 30, 30, 2], "all_points_y": [3, 3, 20, 20]},
         "region_attributes": {"class": "cat"}},
        {"shape_attributes": {"name": "rect", "x": 40, "y": 10, "width": 20, "height": 30}, "region_attributes": {"class": "dog"}},
        {"shape_attributes": {"name": "circle", "cx": 20, "cy": 30, "r": 5}, "region_attributes": {"class": "dog"}},
        {"shape_attributes": {"name": "ellipse", "cx": 40, "cy": 30, "rx": 6, "ry": 3, "theta": 0.5}, "region_attributes": {}}]}}
    if rng.random() < 0.3:
        doc = {"_via_settings": {}, "_via_img_metadata": doc}
    _write(case / "via.json", json.dumps(doc), rng, mutation, outside, ("filename",))
    return ["--from", "via", "--input", "via.json", "--out", "out/out.json", "--default-class", "thing"]


def _coco(case: Path, rng, mutation, outside) -> list[str]:
    (case / "a.jpg").write_bytes(_jpeg(rng))
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 28, 17], "area": 476, "iscrowd": 0,
                "segmentation": [[2, 3, 30, 3, 30, 20, 2, 20]]},
               {"id": 2, "image_id": 1, "category_id": 2, "bbox": [40, 10, 20, 30], "area": 600, "iscrowd": 1,
                "segmentation": {"size": [48, 64], "counts": [1960, 30, 1082]}}],
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    _write(case / "coco.json", json.dumps(doc), rng, mutation, outside, ("file_name",))
    target = rng.choice(("yolo", "voc"))
    return ["--from", "coco", "--to", target, "--input", "coco.json", "--out", f"out/{target}"]


BUILD = {"yolo": _yolo, "labelme": _labelme, "cvat": _cvat, "voc": _voc, "csv": _csv, "via": _via, "coco": _coco}
