"""Run by test_distribute.py in a fresh process (the CPU must be split before TF starts).

One SGD step on 2 mirrored CPU replicas must equal one step on one device: same named
losses, same updated weights (batch norm frozen, so statistics do not depend on the split).
"""

import sys

import numpy as np

import detectlab  # noqa: F401
import keras
import tensorflow as tf

from detectlab.config import load_config
from detectlab.data.coco import load_coco
from detectlab.registry import MODELS
from detectlab.training.devices import split_cpu
from detectlab.training.optimizers import FusedSGD
from detectlab.training.runner import make_generators

recipe, shapes = sys.argv[1], sys.argv[2]
split_cpu(2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
cfg = load_config(recipe, ["train.workers=0", "augment.enabled=false"])
family = MODELS.get("yolov3")
gen, _ = make_generators(cfg, family, load_coco(f"{shapes}/instances_train.json"), None, 3)
x, y = gen[1]


def model():
    keras.utils.set_random_seed(0)
    m = family.build(cfg, 3, None)
    m.set_trainable_layers("outputs")
    m.compile(optimizer=FusedSGD(learning_rate=0.1, momentum=0.9))
    return m


single = model()
with strategy.scope():
    mirrored = model()
assert mirrored.distribute_strategy.num_replicas_in_sync == 2
a = single.train_on_batch(x, y, return_dict=True)
b = mirrored.train_on_batch(x, y, return_dict=True)
for name in ("yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss", "loss"):
    np.testing.assert_allclose(b[name], a[name], rtol=2e-4, err_msg=name)
for wa, wb in zip(single.get_weights(), mirrored.get_weights()):
    np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6)
print("MIRRORED OK", a["loss"], b["loss"])
