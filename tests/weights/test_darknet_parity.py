"""A Darknet ``.weights`` file gives Darknet's raw outputs in detectlab (1e-4 relative),
against the numpy Darknet of :mod:`tests.weights.darknet_reference` at 128 px (on a 2x2
grid the drawn statistics make the net so ill-conditioned that float32 rounding alone
reaches 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest

from detectlab.registry import MODELS
from detectlab.weights.darknet import load_darknet_weights
from tests.weights.darknet_reference import cfg_text, darknet_forward, parse_cfg, relative, write_weights, yolov3_cfg, yolov3_tiny_cfg

CASES = {
    "yolov3_tiny": ("yolov3_tiny_instant.yaml", lambda w, n: yolov3_tiny_cfg(w, n)),
    "yolov3": ("yolov3_darknet53_instant.yaml", lambda w, n: yolov3_cfg(w, [1, 1, 1, 1, 1], n)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_darknet_file_reproduces_darknet_raw_outputs(case, tiny_cfg, tmp_path):
    recipe, make_cfg = CASES[case]
    cfg = tiny_cfg("model.image_size=128", recipe=recipe)  # 4x4 at stride 32: BN statistics of 16 pixels
    classes = 3
    outputs = len(cfg.model.anchor_masks[0]) * (5 + classes)
    size = cfg.model.image_size
    (tmp_path / "net.cfg").write_text(cfg_text(make_cfg(cfg.model.width, outputs), size))
    sections = parse_cfg((tmp_path / "net.cfg").read_text())
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (size, size, 3))
    reference, params = darknet_forward(sections, image, rng)
    write_weights(tmp_path / "net.weights", params)

    model = MODELS.get("yolov3").build(cfg, classes, None)
    report = load_darknet_weights(model, tmp_path / "net.weights")
    assert not report.missing and not report.excluded
    ours = model.predict((image[None] * 255).astype(np.float32), verbose=0)
    ours = ours if isinstance(ours, list) else [ours]
    assert len(ours) == len(reference)
    for level, (a, b) in enumerate(zip(ours, reference)):
        assert a.shape[1:] == b.shape, f"output {level}"
        assert np.abs(b).max() > 0.1  # a live signal, not vanishing activations
        assert relative(a[0], b) < 1e-4, f"yolo_output_{level}: {relative(a[0], b):.2e} relative"
    # the same weights under Keras' normalisation differ visibly: the test can fail
    keras_way, _ = darknet_forward(sections, image, rng, params, keras_bn=True)
    assert max(relative(k, b) for k, b in zip(keras_way, reference)) > 1e-3
