#!/usr/bin/env python
"""Run a trained model on images: annotated copies and a COCO-format results JSON.

    python tools/predict.py --weights runs/shapes_yolo/checkpoints/best.keras --images photos/ --out predictions/
    python tools/predict.py --config RECIPE --weights FILE --images a.jpg b.jpg --out out/ --score 0.5 --nms 0.4
    python tools/predict.py --weights best.keras --images 'shots/*.png' clip.mp4 0 --out out/ --max-frames 300

``--images`` takes image files, folders, globs, video files (mp4, avi, ...) and camera indices
(``0``); each video / camera gives an annotated video and ``NAME.json`` with per-frame
detections, and the frame rate reached is printed.

``results.json`` lists ``{"file_name", "category_id", "category", "bbox": [x, y, w, h], "score"}``
per detection (``image_id``: the image's id in ``--data`` COCO.json, matched by ``file_name``;
without ``--data``, the position in the input list), plus ``segmentation`` (COCO
RLE of the full-size mask) for Mask R-CNN, whose masks are also drawn on the images.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, load_cli_config, positive_int, run, run_config_for, unit_float,
)
from detectlab.errors import ConfigError, DataError  # noqa: E402
from detectlab.outputs import output_folder  # noqa: E402
from detectlab.weights.formats import CFG_HELP  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def input_sources(items: list[str]) -> tuple[list[Path], list[Path | int]]:
    """``--images`` -> (image paths, streams): folders give their images, globs their matches,
    video files and camera indices (``0``, unless a file of that name exists) are streams."""
    from detectlab.inference.video import VIDEO_SUFFIXES

    paths, streams = [], []
    for item in items:
        if item.isdigit() and not Path(item).exists():
            streams.append(int(item))
            continue
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise DataError(f"{item}: the pattern matches no file")
        for p in map(Path, matches):
            if p.is_dir():
                paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            elif p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                streams.append(p)
            elif p.is_file():
                paths.append(p)
            else:
                raise DataError(f"{p}: no such image or folder")
    if not paths and not streams:
        raise DataError(f"no images found in {', '.join(items)}")
    return paths, streams


def best_score(probe, images) -> float:
    """The highest score ``probe`` (a Predictor without a score threshold) gives ``images``."""
    return max((float(s) for det in probe.predict(images) for s in det.scores), default=0.0)


def score_hint(best: float) -> str:
    """'the highest score seen was S: --score T would show it' (T: S rounded down)."""
    import math

    if best <= 0:
        return "the model gave no box any score above 0"
    step = 10.0 ** (math.floor(math.log10(best)) - 2)  # three significant digits, rounded down
    return f"the highest score seen was {best:.4g}: --score {math.floor(best / step) * step:.3g} would show it"


def main(argv=None) -> int:
    p = ArgumentParser(description="detect objects in images", prog="predict.py")
    add_config_flags(p)
    p.add_argument("--weights", required=True, help="a .keras checkpoint or any file train.py --weights takes (see its --help)")
    p.add_argument("--images", required=True, nargs="+",
                   help="image files, folders, globs, video files (mp4, avi, ...) and/or camera indices (0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--score", type=unit_float, help="minimum score (default: predict.score_threshold)")
    p.add_argument("--nms", type=unit_float, help="NMS IoU threshold (default: predict.nms_threshold)")
    p.add_argument("--max-detections", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--class-names", help="a names file (Darknet's coco.names: one per line; a YOLO data.yaml: its names) "
                   "or names separated by commas (default: the model's own; COCO's for an 80-class file)")
    p.add_argument("--cfg", help=CFG_HELP)
    p.add_argument("--data", help="COCO JSON the images belong to: results.json gets its image ids")
    p.add_argument("--max-frames", type=positive_int, help="frames per video / camera (default: a video's all; a camera until Ctrl-C)")
    args = p.parse_args(argv)
    out = output_folder(args.out, "--out")

    from detectlab.data.class_names import read_class_names
    from detectlab.data.coco import coco_image_ids
    from detectlab.data.records import decode_rgb
    from detectlab.inference.predictor import Predictor, coco_entries
    from detectlab.inference.visualize import draw_detections, save_image
    from detectlab.models.loading import model_and_config
    from detectlab.utils import atomic_write_json

    paths, streams = input_sources(args.images)
    cfg = load_cli_config(args.config, args.overrides, run_config_for(args.weights))
    ids = None
    if args.data and paths:  # the file's images among the inputs, with its ids
        paths, ids = coco_image_ids(paths, args.data)
    paths, ids = usable_images(paths, ids, cfg.data.bad_images)
    image_outs, stream_names = output_plan(paths, streams, out, args)
    model, cfg, _ = model_and_config(cfg, args.weights, cfg_file=args.cfg)
    names = read_class_names(args.class_names) if args.class_names else model.class_names
    if len(names) != model.num_classes:
        raise ConfigError(f"--class-names: {len(names)} names for a model with {model.num_classes} classes")
    pr = cfg.predict
    score = args.score if args.score is not None else pr.score_threshold
    settings = (cfg.model.image_size, score, args.nms if args.nms is not None else pr.nms_threshold,
                args.max_detections or pr.max_detections, args.batch_size)
    predictor = Predictor(model, *settings)
    out.mkdir(parents=True, exist_ok=True)
    results, probe, best = [], None, 0.0
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images = [decode_rgb(path) for path in chunk]
        for k, (path, image, det) in enumerate(zip(chunk, images, predictor.predict(images))):
            save_image(image_outs[start + k], draw_detections(image, det, names))
            for entry, cls in zip(coco_entries(det, model.category_ids), det.class_ids):
                results.append({"image_id": ids[start + k], "file_name": str(path), "category": names[int(cls)], **entry})
        if not results:  # nothing shown yet: remember the best score below --score, for the hint
            probe = probe or Predictor(model, settings[0], 0.0, settings[2], 1, settings[4])
            best = max(best, best_score(probe, images))
    if paths:
        atomic_write_json(out / "results.json", results)
        print(f"{len(results)} detections in {len(paths)} images; annotated images and results.json in {out}")
        if not results:
            print(f"nothing scored --score {score:g} or more; {score_hint(best)}")
        if args.data:
            print(f"image_id: the ids of {args.data}")
        else:
            print("image_id: the position in the input list (pass --data COCO.json to write its image ids)")
    predict_streams(predictor, streams, out, names, model.category_ids, args.max_frames, stream_names)
    return 0


def usable_images(paths: list[Path], ids: list[int] | None, bad_images: str) -> tuple[list[Path], list[int]]:
    """``paths`` whose files are images, and their ids (``ids``, else positions): a missing,
    truncated or undecodable file stops with its name and reason, or with
    ``data.bad_images=skip`` is left out, counted and named in the log."""
    from detectlab.data.image_check import check_image_files

    ids = dict(zip(paths, range(len(paths)) if ids is None else ids))
    kept = check_image_files(paths, bad_images)
    return kept, [ids[p] for p in kept]


def output_plan(paths: list[Path], streams: list, out: Path, args) -> tuple[list[Path], list[str]]:
    """The annotated copy of each image (``out/<name>.jpg``) and each stream's output name:
    distinct (see :func:`detectlab.outputs.output_names`), and none of them an input."""
    from detectlab.inference.video import stream_name, stream_outputs
    from detectlab.outputs import check_not_inputs, output_names

    names = output_names([*paths, *(Path(stream_name(s)) for s in streams)], reserved=["results"])
    image_outs = [out / f"{name}.jpg" for name in names[: len(paths)]]
    stream_names = names[len(paths):]
    planned = [*image_outs, out / "results.json"]
    for source, name in zip(streams, stream_names):
        planned += stream_outputs(source, out, name)
    inputs = [("--images", p) for p in [*paths, *(s for s in streams if not isinstance(s, int))]]
    inputs += [(flag, getattr(args, flag[2:].replace("-", "_")))
               for flag in ("--data", "--weights", "--config", "--cfg", "--class-names")]
    check_not_inputs([("--out", p) for p in planned], inputs)
    return image_outs, stream_names


def predict_streams(predictor, streams, out: Path, names, category_ids, max_frames, stream_names=None) -> None:
    """Each video / camera: annotated video + per-frame JSON in ``out``; prints the frame rate."""
    from detectlab.inference.video import predict_stream

    for k, source in enumerate(streams):
        if isinstance(source, int):
            print(f"camera {source}: predicting{'' if max_frames else ' until Ctrl-C'}...")
        r = predict_stream(predictor, source, out, names, category_ids, max_frames,
                           stream_names[k] if stream_names else None)
        print(f"{source}: {r.frames} frames, {r.detections} detections, {r.fps:.1f} frames/s; {r.video} and {r.json}")


if __name__ == "__main__":
    run(main)
