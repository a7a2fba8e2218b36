"""Predicting on video files and cameras; ``--images`` globs, videos and camera indices."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detectlab.commands import tool_module
from detectlab.errors import DataError
from detectlab.inference.predictor import Predictor
from detectlab.inference.video import frame_count, open_stream, predict_stream
from detectlab.models.loading import model_from_config
from tests.conftest import INSTANT, tool


def write_video(path, frames=5, hw=(48, 80)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, hw[::-1])
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
    writer.release()
    assert frame_count(path) == frames
    return path


def test_video_gives_an_annotated_video_and_per_frame_json(tmp_path, tiny_cfg):
    cfg = tiny_cfg("model.num_classes=3")
    model = model_from_config(cfg, None)
    # score 0: an untrained head starts at prior biases (objectness 0.01), so only a zero threshold shows boxes
    predictor = Predictor(model, cfg.model.image_size, 0.0, 0.45, 10, batch_size=2)  # 5 frames: batches 2, 2, 1
    result = predict_stream(predictor, write_video(tmp_path / "clip.avi"), tmp_path / "out", model.class_names,
                            model.category_ids)
    assert (result.frames, result.video.name, result.json.name) == (5, "clip.avi", "clip.json")
    assert result.fps > 0 and frame_count(result.video) == 5
    capture = open_stream(result.video)
    ok, frame = capture.read()
    assert ok and frame.shape == (48, 80, 3)
    entries = json.loads(result.json.read_text())
    assert [e["frame"] for e in entries] == list(range(5)) and entries[1]["time_s"] == pytest.approx(0.1)
    assert result.detections == sum(len(e["detections"]) for e in entries) > 0
    det = entries[0]["detections"][0]
    assert det["category"] in model.class_names and len(det["bbox"]) == 4
    # at most max_frames
    assert predict_stream(predictor, tmp_path / "clip.avi", tmp_path / "two", model.class_names, model.category_ids, 2).frames == 2


def test_unopenable_camera_or_video_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="camera 97: cannot open"):
        open_stream(97)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4: cannot open"):
        open_stream(tmp_path / "broken.mp4")


def test_images_flag_takes_globs_videos_folders_and_camera_indices(tmp_path):
    input_sources = tool_module("predict").input_sources
    for name in ("a.png", "b.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    cv2.imwrite(str(tmp_path / "folder" / "d.jpg"), np.zeros((4, 4, 3), np.uint8))
    paths, streams = input_sources([str(tmp_path / "*.png"), str(tmp_path / "clip.mp4"), "0", str(tmp_path / "folder")])
    assert [p.name for p in paths] == ["a.png", "b.png", "d.jpg"]
    assert streams == [tmp_path / "clip.mp4", 0]
    with pytest.raises(DataError, match="matches no file"):
        input_sources([str(tmp_path / "*.bmp")])


@pytest.mark.slow
def test_predict_tool_on_a_video_prints_the_frame_rate(tmp_path, tiny_cfg):
    model = model_from_config(tiny_cfg("model.num_classes=3"), None)
    model.save(tmp_path / "m.keras")
    done = tool("tools/predict.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--set", "model.num_classes=3",
                "--weights", tmp_path / "m.keras", "--images", write_video(tmp_path / "clip.avi"), "--out", tmp_path / "out",
                "--score", "0.05")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 frames" in done.stdout and "frames/s" in done.stdout
    assert frame_count(tmp_path / "out" / "clip.avi") == 5
