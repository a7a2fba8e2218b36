import numpy as np
import tensorflow as tf

from detectlab.boxes import iou_matrix, shape_iou
from detectlab.layers.box_ops import centre_iou, iou


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    # 5x5 overlap of two 10x10 boxes: 25 / (100 + 100 - 25)
    expected = np.array([[25 / 175, 1.0, 0.0], [0.0, 4 / 100, 0.0]], np.float32)  # [0,0,2,2] misses [5,5,15,15]
    np.testing.assert_allclose(iou_matrix(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(iou(tf.constant(a)[:, None], tf.constant(b)[None]).numpy(), expected, rtol=1e-6)


def test_centre_iou_and_shape_iou():
    # cx cy w h: same centre, 4x2 vs 2x4 -> overlap 2x2=4, union 8+8-4=12
    a = tf.constant([[5.0, 5.0, 4.0, 2.0]])
    b = tf.constant([[5.0, 5.0, 2.0, 4.0]])
    np.testing.assert_allclose(centre_iou(a, b).numpy(), [4 / 12], rtol=1e-6)
    np.testing.assert_allclose(shape_iou([[4, 2]], [[2, 4], [4, 2]]), [[4 / 12, 1.0]], rtol=1e-6)
