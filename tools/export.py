#!/usr/bin/env python
"""Export a trained model for serving without detectlab: a TensorFlow SavedModel, TFLite or ONNX.

    python tools/export.py --weights runs/shapes/checkpoints/best.keras --format saved_model --out export/shapes
    python tools/export.py --weights best.keras --format tflite --quantize float32,float16,int8 --calibration train.json

Every export ends with a parity check against ``Predictor`` on a few images of several sizes
(``--data`` images, else synthetic ones): boxes within 1 px, same classes, masks agreeing.
A failed check is an error. int8 TFLite reports its AP50 against the Keras model on ``--data``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, load_cli_config, positive_int, run, run_config_for, unit_float,
)
from detectlab.errors import ConfigError  # noqa: E402
from detectlab.weights.formats import CFG_HELP  # noqa: E402

LOW_SCORE = 0.01  # the SavedModel's second parity check when nothing passes the export's threshold


def parse_args(argv=None):
    p = ArgumentParser(description="export a model for TF Serving / TFLite", prog="export.py")
    add_config_flags(p)
    p.add_argument("--weights", required=True, help=".keras checkpoint, by-name .h5 or Darknet .weights")
    p.add_argument("--cfg", help=CFG_HELP)
    p.add_argument("--format", required=True, choices=["saved_model", "tflite", "onnx"])
    p.add_argument("--out", help="output folder (default: export/<format> beside the run folder of --weights)")
    p.add_argument("--score", type=unit_float, help="default score threshold (default: predict.score_threshold)")
    p.add_argument("--nms", type=unit_float, help="default NMS IoU threshold (default: predict.nms_threshold)")
    p.add_argument("--max-detections", type=positive_int, help="detections per image (default: predict.max_detections)")
    p.add_argument("--quantize", default="float32", help="TFLite types, comma-separated: float32, float16, int8")
    p.add_argument("--calibration", help="COCO JSON whose images calibrate int8 (the training data)")
    p.add_argument("--calibration-images", help="image folder of --calibration (default: next to the JSON)")
    p.add_argument("--calibration-count", type=positive_int, default=64, help="calibration images to use")
    p.add_argument("--data", help="COCO JSON: parity-check images, and int8's AP50 drop")
    p.add_argument("--images", help="image folder of --data")
    p.add_argument("--parity-images", type=positive_int, default=4, help="images in the parity check")
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    from detectlab.data.coco import load_coco
    from detectlab.inference import export as ex
    from detectlab.inference.predictor import Predictor
    from detectlab.models.loading import model_and_config
    from detectlab.utils import atomic_write_json

    run_config = run_config_for(args.weights)
    cfg = load_cli_config(args.config, args.overrides, run_config)
    types = [t.strip() for t in args.quantize.split(",") if t.strip()]
    unknown = [t for t in types if t not in ex.TFLITE_TYPES]
    if unknown or not types:
        raise ConfigError(f"--quantize: unknown type '{(unknown or [''])[0]}' (known: {', '.join(ex.TFLITE_TYPES)})")
    if args.format == "tflite" and "int8" in types and not args.calibration:
        raise ConfigError("--quantize int8 needs --calibration DATA.json (training images for the representative dataset)")
    data = load_coco(args.data, args.images) if args.data else None
    model, cfg, _ = model_and_config(cfg, args.weights, cfg_file=args.cfg)
    pr, size = cfg.predict, cfg.model.image_size
    score = args.score if args.score is not None else pr.score_threshold
    nms = args.nms if args.nms is not None else pr.nms_threshold
    max_det = args.max_detections or pr.max_detections
    out = Path(args.out) if args.out else (run_config.parent if run_config else Path(".")) / "export" / args.format
    predictor = Predictor(model, size, score, nms, max_det)
    images = ex.parity_images(size, data, args.parity_images)

    if args.format == "saved_model":
        import tensorflow as tf

        ex.export_saved_model(model, out, size, score, nms, max_det, cfg.model.family)
        loaded = tf.saved_model.load(str(out))
        compared = ex.check_parity(predictor, ex.saved_model_detector(loaded), images, str(out))
        print(f"SavedModel written to {out} (signatures serving_default, serving_bytes, detect, detect_bytes)")
        print(ex.parity_summary(images, compared))
        if not compared:  # nothing above the threshold (an early checkpoint): compare at a low one
            low = Predictor(model, size, LOW_SCORE, nms, max_det)
            compared = ex.check_parity(low, ex.saved_model_detector(loaded, (LOW_SCORE, nms)), images, str(out))
            print(f"{ex.parity_summary(images, compared)} (signature detect, score threshold {LOW_SCORE})")
        return 0
    if args.format == "onnx":
        import tempfile

        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            ex.export_saved_model(model, tmp, size, score, nms, max_det, cfg.model.family)
            path = ex.export_onnx(tmp, out / "model.onnx")
        compared = ex.check_parity(predictor, ex.onnx_detector(path), images, str(path))
        print(f"ONNX written to {path} (input 'image' uint8 HxWx3; outputs as the SavedModel's serving_default)")
        print(ex.parity_summary(images, compared) + " (onnxruntime)")
        return 0

    calibration = None
    if "int8" in types:
        calibration_set = load_coco(args.calibration, args.calibration_images)
        count = min(args.calibration_count, len(calibration_set))
        calibration = [predictor.letterbox(calibration_set.load_image(i))[0] for i in range(count)]
    out.mkdir(parents=True, exist_ok=True)
    written, compared = {}, 0
    for dtype in types:
        path = out / f"model_{dtype}.tflite"
        path.write_bytes(ex.tflite_bytes(model, size, score, nms, max_det, dtype, calibration))
        detector = ex.TfliteDetector(path, size)
        if dtype == "int8":
            line = ex.int8_report(predictor, detector, images)
            if data is not None:
                from detectlab.evaluation.evaluate import ap50_drop

                line += "; " + ap50_drop(predictor, detector.predict, data)
            print(line)
        else:
            compared = ex.check_parity(predictor, detector.predict, images, str(path))
        written[dtype] = path.name
    atomic_write_json(out / ex.EXPORT_INFO, {
        "format": "tflite", "family": cfg.model.family, "image_size": size, "class_names": list(model.class_names),
        "score_threshold": score, "nms_threshold": nms, "max_detections": max_det, "files": written,
        "input": f"x float32 (1, {size}, {size}, 3): RGB 0..255 letterboxed on grey 128",
        "outputs": "boxes (K, 4) y1 x1 y2 x2 normalised to the letterboxed frame, scores, class_ids, valid"})
    print(f"TFLite ({', '.join(types)}) written to {out}")
    if types != ["int8"]:
        print(ex.parity_summary(images, compared) + " (float TFLite)")
    return 0


if __name__ == "__main__":
    run(main)
