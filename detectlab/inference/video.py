"""Run a Predictor on a video file or a camera: an annotated video and per-frame JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from detectlab.errors import DataError
from detectlab.inference.predictor import Predictor, coco_entries
from detectlab.inference.visualize import draw_detections
from detectlab.utils import atomic_write_json

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"}
# container -> FourCC that OpenCV's bundled FFmpeg writes without extra codecs
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


@dataclass
class StreamResult:
    """What one video / camera run produced: frame count, frames/s reached, output files."""

    frames: int
    detections: int
    fps: float
    video: Path
    json: Path


def stream_name(source: Path | int) -> str:
    return f"camera{source}" if isinstance(source, int) else Path(source).stem


def stream_outputs(source: Path | int, out_dir: Path, name: str | None = None) -> tuple[Path, Path]:
    """``(annotated video, per-frame JSON)`` paths of ``source`` in ``out_dir`` (``name``: default
    the video's stem or ``cameraN``): the video keeps its container (cameras and others: ``.avi``)."""
    suffix = Path(source).suffix.lower() if not isinstance(source, int) else ".avi"
    suffix = suffix if suffix in _FOURCC else ".avi"
    name = name or stream_name(source)
    return out_dir / f"{name}{suffix}", out_dir / f"{name}.json"


def open_stream(source: Path | int) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of a video file or a camera index; a one-line ``DataError`` if it fails."""
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else str(source)
        raise DataError(f"{what}: cannot open (not a video OpenCV can decode, or no such camera)")
    return capture


def predict_stream(predictor: Predictor, source: Path | int, out_dir: Path, class_names: list[str],
                   category_ids: list[int], max_frames: int | None = None, name: str | None = None) -> StreamResult:
    """Detect in every frame of ``source`` (a video file, or a camera index until ``max_frames``
    or Ctrl-C), writing ``OUT/<name>.<ext>`` (annotated; cameras as ``.avi``) and ``OUT/<name>.json``
    (:func:`stream_outputs`):
    ``[{"frame", "time_s", "detections": [{"category_id", "category", "bbox": [x, y, w, h], "score"}]}]``.
    Frames are predicted in batches of ``predictor.batch_size``; ``fps`` counts decoding,
    prediction, drawing and encoding."""
    capture = open_stream(source)
    rate = capture.get(cv2.CAP_PROP_FPS) or 0.0
    rate = rate if 0 < rate < 1000 else 25.0
    video_path, json_path = stream_outputs(source, out_dir, name)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    writer, frames, entries, count = None, [], [], 0
    start = time.perf_counter()

    def flush():
        nonlocal writer
        for image, det in zip(frames, predictor.predict(frames)):
            if writer is None:
                h, w = image.shape[:2]
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*_FOURCC[video_path.suffix]), rate, (w, h))
                if not writer.isOpened():
                    raise DataError(f"{video_path}: OpenCV cannot write this video ({w}x{h} frames)")
            writer.write(cv2.cvtColor(draw_detections(image, det, class_names), cv2.COLOR_RGB2BGR))
            index = len(entries)
            found = [{"category": class_names[int(c)], **e} for e, c in zip(coco_entries(det, category_ids), det.class_ids)]
            entries.append({"frame": index, "time_s": round(index / rate, 4), "detections": found})
        frames.clear()

    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            count += 1
            if len(frames) == predictor.batch_size:
                flush()
    except KeyboardInterrupt:  # the way to stop a camera: keep what was seen
        pass
    finally:
        if frames:
            flush()
        capture.release()
        if writer is not None:
            writer.release()
    if not entries:
        raise DataError(f"{source}: no frame could be read")
    elapsed = time.perf_counter() - start
    atomic_write_json(json_path, entries)
    return StreamResult(len(entries), sum(len(e["detections"]) for e in entries), len(entries) / max(elapsed, 1e-9),
                        video_path, json_path)


def frame_count(path: Path) -> int:
    """Frames a video file decodes to (read one by one; container headers can be wrong)."""
    capture = open_stream(path)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count

