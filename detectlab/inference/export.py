"""Export a trained model as a self-contained SavedModel (plain TensorFlow serves it).

The exported graph does what :class:`~detectlab.inference.predictor.Predictor` does around
the family's ``inference_model``: letterbox in, un-letterbox the boxes, paste the masks
to full size. Signatures (all for one image; outputs sliced to the detections found):

- ``serving_default(image)``: ``image uint8 (H, W, 3)`` RGB, any size;
- ``serving_bytes(image_bytes)``: an encoded JPEG / PNG / BMP / GIF string;
- ``detect(image, score_threshold, nms_threshold)`` and ``detect_bytes(...)``: the same with
  the thresholds as inputs (a SavedModel signature input cannot have a default, so the
  first two use the recipe's values).

ONNX (``tf2onnx`` from the SavedModel's ``serving_default``): the same input and outputs.

TFLite (YOLOv3 / YOLOv3-tiny; float32, float16 or int8): input ``x float32 (1, S, S, 3)``, the
image letterboxed to ``S = image_size`` on grey (128), RGB 0..255; outputs ``boxes (K, 4)``
y1 x1 y2 x2 normalised to the letterboxed frame, ``scores``, ``class_ids``, ``valid`` (NMS inside,
with TFLite's built-in NMS op). The letterbox needs a dynamic-shape warp TFLite lacks.

Outputs: ``boxes (K, 4) float32`` **x1, y1, x2, y2** in the input image's pixels,
``scores (K,)``, ``class_ids (K,) int32`` (0..C-1), ``class_names (K,) string``,
``num_detections ()`` int32, and for Mask R-CNN ``masks (K, H, W) uint8`` (0/1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from detectlab.data.transforms import GREY
from detectlab.errors import ExportError
from detectlab.inference.predictor import Detections, Predictor, unletterbox
from detectlab.layers.conv import portable_convolutions
from detectlab.layers.nms import class_offset_nms

EXPORT_INFO = "detectlab_export.json"


# -- the pieces of Predictor, in-graph ----------------------------------------------------

def letterbox_graph(image, size: int):
    """``image uint8 (H, W, 3)`` -> ``float32 (size, size, 3)`` letterboxed on grey and its
    ``transform (4,)`` ``sy, sx, ty, tx`` (original ``(y, x)`` -> ``(sy*y + ty, sx*x + tx)``).

    The same warp as :func:`detectlab.data.transforms.letterbox` (bilinear, pixel centres at
    ``i + 0.5``, constant grey border), so the network sees the same pixels (up to rounding).
    Separable gathers only, so ONNX converters take it too.
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_min(size / hw)
    ty, tx = tf.unstack((size - hw * scale) / 2)
    x = _bilinear_rows(tf.cast(image, tf.float32), scale, ty, size)  # (size, W, 3)
    x = _bilinear_rows(tf.transpose(x, [1, 0, 2]), scale, tx, size)  # (size, size, 3), transposed back
    return tf.round(tf.transpose(x, [1, 0, 2])), tf.stack([scale, scale, ty, tx])


def _bilinear_rows(image, scale, shift, size: int):
    """Rows ``i`` of the output read input row ``(i + 0.5 - shift) / scale - 0.5`` (bilinear);
    rows outside the input count as grey (as ``cv2.BORDER_CONSTANT``)."""
    length = tf.shape(image)[0]
    u = (tf.range(size, dtype=tf.float32) + 0.5 - shift) / scale - 0.5
    i0 = tf.cast(tf.floor(u), tf.int32)
    frac = (u - tf.floor(u))[:, None, None]

    def row(i):
        inside = ((i >= 0) & (i < length))[:, None, None]
        return tf.where(inside, tf.gather(image, tf.clip_by_value(i, 0, length - 1)), float(GREY))

    return row(i0) * (1 - frac) + row(i0 + 1) * frac


def unletterbox_graph(boxes, transform, shape_hw):
    """``boxes (K, 4)`` y1 x1 y2 x2 pixels of the letterboxed frame -> the original image's,
    clipped to it (as :func:`detectlab.inference.predictor.unletterbox`)."""
    sy, sx, ty, tx = tf.unstack(transform)
    h, w = tf.unstack(tf.cast(shape_hw, tf.float32))
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    ys = [tf.clip_by_value((v - ty) / sy, 0.0, h) for v in (y1, y2)]
    xs = [tf.clip_by_value((v - tx) / sx, 0.0, w) for v in (x1, x2)]
    return tf.stack([ys[0], xs[0], ys[1], xs[1]], axis=-1)


def paste_masks_graph(masks, boxes, shape_hw, threshold: float = 0.5):
    """``masks (K, m, m)`` probabilities in each box's frame, ``boxes (K, 4)`` y1 x1 y2 x2 in
    image pixels -> ``uint8 (K, H, W)`` 0/1 masks (as :func:`detectlab.inference.predictor.paste_masks`:
    the box is widened to whole pixels and the mask resized bilinearly, half-pixel centres)."""
    masks = tf.cast(masks, tf.float32)
    m = tf.shape(masks)[-1]
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    top, left = tf.floor(y1), tf.floor(x1)
    bottom, right = tf.maximum(tf.math.ceil(y2), top + 1), tf.maximum(tf.math.ceil(x2), left + 1)
    rows = _resize_weights(top, bottom, shape_hw[0], m)  # (K, H, m)
    cols = _resize_weights(left, right, shape_hw[1], m)  # (K, W, m)
    pasted = tf.einsum("kyi,kij,kxj->kyx", rows, masks, cols)
    return tf.cast(pasted >= threshold, tf.uint8)


def _resize_weights(start, stop, length, m):
    """Bilinear weights ``(K, length, m)`` of mask cells for pixels ``start <= p < stop`` (0 elsewhere)."""
    mf = tf.cast(m, tf.float32)
    p = tf.range(tf.cast(length, tf.float32))[None] - start[:, None]  # (K, length) offset in the box
    u = tf.clip_by_value((p + 0.5) * mf / (stop - start)[:, None] - 0.5, 0.0, mf - 1)
    i0 = tf.floor(u)
    frac = u - i0
    i0 = tf.cast(i0, tf.int32)
    i1 = tf.minimum(i0 + 1, m - 1)
    inside = tf.cast((p >= 0) & (p < (stop - start)[:, None]), tf.float32)
    weights = tf.one_hot(i0, m) * (1 - frac)[..., None] + tf.one_hot(i1, m) * frac[..., None]
    return weights * inside[..., None]


# -- the serving module ----------------------------------------------------------------------

def serving_functions(model, image_size: int, score_threshold: float, nms_threshold: float, max_detections: int):
    """``({signature name: tf.function with its input signature}, the inference network they call)``."""
    network = model.inference_model(score_threshold, nms_threshold, max_detections, threshold_input=True)
    names = tf.constant(model.class_names)
    defaults = (float(score_threshold), float(nms_threshold))

    def detect_one(image, score, nms):
        image = tf.ensure_shape(image, [None, None, 3])
        shape_hw = tf.shape(image)[:2]
        letterboxed, transform = letterbox_graph(image, image_size)
        thresholds = tf.reshape(tf.stack([tf.cast(score, tf.float32), tf.cast(nms, tf.float32)]), [1, 2])
        result = network([letterboxed[None], thresholds], training=False)
        n = result["valid"][0]
        boxes = unletterbox_graph(result["boxes"][0, :n] * image_size, transform, shape_hw)
        class_ids = tf.cast(result["class_ids"][0, :n], tf.int32)
        out = {
            "boxes": tf.gather(boxes, [1, 0, 3, 2], axis=-1),  # x1 y1 x2 y2
            "scores": result["scores"][0, :n],
            "class_ids": class_ids,
            "class_names": tf.gather(names, class_ids),
            "num_detections": n,
        }
        if "masks" in result:
            out["masks"] = paste_masks_graph(result["masks"][0, :n], boxes, shape_hw)
        return out

    def decode(image_bytes):
        return tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)

    image_spec = tf.TensorSpec([None, None, 3], tf.uint8, name="image")
    bytes_spec = tf.TensorSpec([], tf.string, name="image_bytes")
    score_spec = tf.TensorSpec([], tf.float32, name="score_threshold")
    nms_spec = tf.TensorSpec([], tf.float32, name="nms_threshold")
    return {
        "serving_default": tf.function(lambda image: detect_one(image, *defaults), input_signature=[image_spec]),
        "serving_bytes": tf.function(lambda image_bytes: detect_one(decode(image_bytes), *defaults),
                                     input_signature=[bytes_spec]),
        "detect": tf.function(detect_one, input_signature=[image_spec, score_spec, nms_spec]),
        "detect_bytes": tf.function(lambda image_bytes, score_threshold, nms_threshold:
                                    detect_one(decode(image_bytes), score_threshold, nms_threshold),
                                    input_signature=[bytes_spec, score_spec, nms_spec]),
    }, network


def export_saved_model(model, out: str | Path, image_size: int, score_threshold: float, nms_threshold: float,
                       max_detections: int, family: str = "") -> Path:
    """Write ``out`` (a SavedModel folder) and ``out/detectlab_export.json`` (what was exported)."""
    out = Path(out)
    functions, network = serving_functions(model, image_size, score_threshold, nms_threshold, max_detections)
    with portable_convolutions():  # traced here
        archive = keras.export.ExportArchive()
        archive.track(network)
        for name, fn in functions.items():
            archive.add_endpoint(name, fn)
        archive.write_out(str(out), verbose=False)
    info = {"format": "saved_model", "family": family, "image_size": int(image_size), "class_names": list(model.class_names),
            "score_threshold": float(score_threshold), "nms_threshold": float(nms_threshold),
            "max_detections": int(max_detections), "signatures": sorted(functions)}
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2))
    return out


def export_onnx(saved_model: str | Path, out_file: str | Path, opset: int = 17) -> Path:
    """Convert a SavedModel written by :func:`export_saved_model` (its ``serving_default``) to ONNX
    with ``tf2onnx`` (``pip install tf2onnx onnxruntime``)."""
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ExportError("--format onnx needs tf2onnx: pip install 'detectlab[onnx]'") from None
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--signature_def",
               "serving_default", "--output", str(out_file), "--opset", str(opset)]
    done = subprocess.run(command, capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if " - ERROR - " in line]
    if done.returncode != 0 or errors:
        last = (errors or done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"tf2onnx could not convert {saved_model}: {last.split(' - ERROR - ')[-1]}")
    return Path(out_file)


def onnx_detector(path: str | Path) -> Callable[[np.ndarray], Detections]:
    """An ``.onnx`` export as ``image -> Detections`` (y1 x1 y2 x2), run by onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def detect(image: np.ndarray) -> Detections:
        out = dict(zip(names, session.run(None, {"image": image})))
        return Detections(out["boxes"][:, [1, 0, 3, 2]], out["scores"], out["class_ids"], out.get("masks"))

    return detect


# -- TFLite ------------------------------------------------------------------------------------

TFLITE_TYPES = ("float32", "float16", "int8")


def tflite_bytes(model, image_size: int, score_threshold: float, nms_threshold: float, max_detections: int,
                 dtype: str = "float32", calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """A YOLOv3 model as a ``.tflite`` flatbuffer (see the module docstring for its signature).

    ``calibration``: letterboxed ``float32 (S, S, 3)`` images for int8's representative dataset.
    """
    if dtype not in TFLITE_TYPES:
        raise ExportError(f"--quantize: unknown TFLite type '{dtype}' (known: {', '.join(TFLITE_TYPES)})")
    network = model.inference_model(score_threshold, nms_threshold, max_detections)
    try:
        decode = network.get_layer("yolo_decode")
    except ValueError:
        raise ExportError(f"TFLite export supports YOLOv3 models only, not {model.name} "
                          "(its proposal stage needs TensorFlow ops TFLite lacks); export a SavedModel") from None
    decoder = keras.Model(network.inputs, decode.output)

    @tf.function(input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="x")])
    def detect(x):
        boxes, scores = decoder(x, training=False)
        names = ("boxes", "scores", "class_ids", "valid")
        result = class_offset_nms(tf.cast(boxes[0], tf.float32), tf.cast(scores[0], tf.float32), max_detections,
                                  nms_threshold, score_threshold)
        return dict(zip(names, result))

    with tempfile.TemporaryDirectory() as tmp, portable_convolutions():  # from_saved_model freezes the variables
        archive = keras.export.ExportArchive()
        archive.track(decoder)
        archive.add_endpoint("serving_default", detect)
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if dtype != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if dtype == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if dtype == "int8":
            images = list(calibration or [])
            if not images:
                raise ExportError("--quantize int8 needs calibration images (--calibration DATA.json)")
            converter.representative_dataset = lambda: ([im[None].astype(np.float32)] for im in images)
        return converter.convert()


class TfliteDetector:
    """Runs an exported ``.tflite`` on RGB images of any size (letterbox with detectlab's own)."""

    def __init__(self, path_or_bytes, image_size: int):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            content = path_or_bytes if isinstance(path_or_bytes, bytes) else None
            path = None if content is not None else str(path_or_bytes)
            self.interpreter = tf.lite.Interpreter(model_path=path, model_content=content)
        self.runner = self.interpreter.get_signature_runner()
        self.image_size = int(image_size)

    def predict(self, image: np.ndarray) -> Detections:
        from detectlab.data.transforms import letterbox

        letterboxed, transform = letterbox(image, self.image_size)
        out = self.runner(x=letterboxed[None].astype(np.float32))
        n = int(out["valid"])
        boxes = unletterbox(out["boxes"][:n] * self.image_size, transform, image.shape[:2])
        return Detections(boxes, out["scores"][:n], out["class_ids"][:n].astype(np.int32))


# -- parity --------------------------------------------------------------------------------------

def parity_images(image_size: int, dataset=None, count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """RGB images of several sizes and aspect ratios: ``count`` synthetic shapes images resized to
    ``1x1, 0.75x1.6, 2.3x1.1, 0.5x3`` of ``image_size`` (h x w), then the dataset's first ``count``."""
    import cv2

    from detectlab.data.shapes import draw_image

    rng = np.random.default_rng(seed)
    shapes = [(1.0, 1.0), (0.75, 1.6), (2.3, 1.1), (0.5, 3.0)]
    images = []
    for k in range(count):
        fh, fw = shapes[k % len(shapes)]
        image, _ = draw_image(image_size, rng)
        images.append(cv2.resize(image, (max(8, round(fw * image_size)), max(8, round(fh * image_size)))))
    if dataset is not None:
        images += [dataset.load_image(i) for i in range(min(count, len(dataset)))]
    return images


def saved_model_detector(loaded, thresholds: tuple[float, float] | None = None) -> Callable[[np.ndarray], Detections]:
    """A loaded SavedModel as ``image -> Detections`` (y1 x1 y2 x2), to compare with Predictor:
    ``serving_default``, or ``detect`` with ``thresholds`` ``(score, nms)``."""

    def detect(image: np.ndarray) -> Detections:
        if thresholds is None:
            result = loaded.signatures["serving_default"](image=tf.constant(image))
        else:
            result = loaded.signatures["detect"](image=tf.constant(image), score_threshold=tf.constant(thresholds[0], tf.float32),
                                                 nms_threshold=tf.constant(thresholds[1], tf.float32))
        out = {k: v.numpy() for k, v in result.items()}
        return Detections(out["boxes"][:, [1, 0, 3, 2]], out["scores"], out["class_ids"], out.get("masks"))

    return detect


def parity_problem(expected: Detections, got: Detections, score_threshold: float, max_detections: int,
                   tolerance: float = 1.0, score_margin: float = 0.02) -> str | None:
    """Why ``got`` does not reproduce ``expected`` (``None`` if it does).

    Each expected detection needs one of the same class with every box side within ``tolerance``
    pixels (greedy, best IoU first). Detections without a partner are tolerated only when their
    score is within ``score_margin`` of a cut-off (the score threshold, or the lowest score of a
    full top-``max_detections`` list), where rounding decides which side they fall.
    """
    from detectlab.boxes import iou_matrix

    cut = {id(d): (d.scores.min() if len(d) >= max_detections else -1.0) for d in (expected, got)}
    used = np.zeros(len(got), bool)
    iou = iou_matrix(expected.boxes, got.boxes) if len(expected) and len(got) else np.zeros((len(expected), len(got)))
    for i in np.argsort(-expected.scores, kind="stable"):
        candidates = [j for j in np.argsort(-iou[i], kind="stable") if not used[j] and got.class_ids[j] == expected.class_ids[i]]
        close = [j for j in candidates if np.abs(got.boxes[j] - expected.boxes[i]).max() <= tolerance]
        if close:
            used[close[0]] = True
        elif not _marginal(expected.scores[i], score_threshold, cut[id(got)], score_margin):
            return (f"detection {i} (class {expected.class_ids[i]}, score {expected.scores[i]:.3f}, box "
                    f"{np.round(expected.boxes[i], 1).tolist()}) has no counterpart within {tolerance:g} px")
    for j in np.flatnonzero(~used):
        if not _marginal(got.scores[j], score_threshold, cut[id(expected)], score_margin):
            return f"extra detection (class {got.class_ids[j]}, score {got.scores[j]:.3f}) that Predictor does not find"
    if expected.masks is not None and got.masks is not None:
        return _mask_problem(expected, got)
    return None


def _marginal(score: float, threshold: float, cut: float, margin: float) -> bool:
    return abs(score - threshold) <= margin or abs(score - cut) <= margin


def _mask_problem(expected: Detections, got: Detections, min_agreement: float = 0.99) -> str | None:
    """Masks of matched detections (same order) must agree on ``min_agreement`` of the pixels."""
    if expected.masks.shape[1:] != got.masks.shape[1:]:
        return f"masks are {got.masks.shape[1:]} instead of the image's {expected.masks.shape[1:]}"
    n = min(len(expected.masks), len(got.masks))
    agreement = (expected.masks[:n] == got.masks[:n]).mean() if n else 1.0
    return None if agreement >= min_agreement else f"masks agree on only {agreement:.1%} of the pixels"


def check_parity(predictor: Predictor, detect: Callable[[np.ndarray], Detections], images: list[np.ndarray],
                 what: str, tolerance: float = 1.0) -> int:
    """Raise :class:`ExportError` (one line) unless ``detect`` reproduces ``predictor`` on ``images``;
    returns how many of Predictor's detections were compared."""
    compared = 0
    for k, (image, expected) in enumerate(zip(images, predictor.predict(images))):
        problem = parity_problem(expected, detect(image), predictor.score_threshold, predictor.max_detections, tolerance)
        if problem:
            raise ExportError(f"{what}: parity check failed on test image {k} ({image.shape[0]}x{image.shape[1]}): {problem}")
        compared += len(expected)
    return compared


def parity_summary(images: list[np.ndarray], compared: int) -> str:
    """How the parity check went, in words (a check without detections says so)."""
    sizes = ", ".join(f"{im.shape[0]}x{im.shape[1]}" for im in images)
    if not compared:
        return (f"parity with Predictor checked on {len(images)} images ({sizes}), but neither found any detection "
                "at this score threshold: boxes were not compared (pass --data, or a lower --score to check them)")
    return f"parity with Predictor checked on {len(images)} images ({sizes}): {compared} detections within 1 px"


def int8_report(predictor: Predictor, detector: TfliteDetector, images: list[np.ndarray]) -> str:
    """One line on an int8 model: how many of Predictor's detections it keeps (IoU >= 0.5, same
    class) on ``images`` (its COCO AP50 on data: :func:`detectlab.evaluation.evaluate.ap50_drop`)."""
    from detectlab.boxes import iou_matrix

    found = total = 0
    for image, expected in zip(images, predictor.predict(images)):
        got = detector.predict(image)
        total += len(expected)
        if len(expected) and len(got):
            same = expected.class_ids[:, None] == got.class_ids[None]
            found += int(((iou_matrix(expected.boxes, got.boxes) >= 0.5) & same).any(1).sum())
    return f"int8: {found}/{total} of Predictor's detections on the check images found again (IoU >= 0.5, same class)"
