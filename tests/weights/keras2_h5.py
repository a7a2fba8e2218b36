"""Write Keras 2 HDF5 weight files with h5py, in Keras 2's own layout (test fixtures).

``save_weights``: root attributes ``layer_names``, ``backend``, ``keras_version``; one group
per layer (weightless layers too) with a ``weight_names`` attribute, each weight a dataset
at its name inside the group (``conv2d_1/kernel:0`` is a sub-group and a dataset).
``save`` (whole model) puts the same under ``model_weights`` and adds ``model_config``.
"""

from __future__ import annotations

import json

import h5py
import numpy as np


def write_keras2_h5(path, layers, whole_model: bool, outputs_last: bool = True):
    """Keras 2's ``save_weights`` (or ``save`` with ``whole_model``) HDF5 layout."""
    order = [n for n, w in layers]
    if outputs_last:  # Keras 2 lists a functional model's layers by depth: YOLO's output convs come last
        outs = [n for n, w in layers if n.startswith("conv2d") and any(k.endswith("bias:0") for k, _ in w)]
        order = [n for n in order if n not in outs] + outs
    weights = dict(layers)
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.1.5"
        f.attrs["backend"] = b"tensorflow"
        if whole_model:
            config = {"class_name": "Model", "config": {"name": "model_1", "layers": [{"name": n, "class_name": "Layer"} for n in order]}}
            f.attrs["model_config"] = json.dumps(config).encode()
            g = f.create_group("model_weights")
            g.attrs["keras_version"], g.attrs["backend"] = b"2.1.5", b"tensorflow"
        else:
            g = f
        g.attrs["layer_names"] = np.array([n.encode() for n in order])
        for name in order:
            lg = g.create_group(name)
            lg.attrs["weight_names"] = np.array([w.encode() for w, _ in weights[name]], dtype="S")
            for w, value in weights[name]:
                lg.create_dataset(w, data=value)
