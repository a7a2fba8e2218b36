"""``AdaptiveConv2D``: ``keras.layers.Conv2D`` computed the fastest way for its shape.

A convolution is a matrix product; which formulation runs fastest depends on the shape.
oneDNN's direct convolution is fastest on large feature maps, but on this generation of
CPUs it is slow for weight-heavy layers on small maps, especially their weight gradient
(measured on 2 cores, forward+backward, bf16: 4x4x512->1024 3x3 83 ms vs 16 ms;
13x13x512->1024 32 vs 19 ms; 1x1 layers 2-5x). So for ``strides=1``, ``dilation=1``,
``groups=1``, channels-last layers:

- 1x1 kernels run as one ``matmul`` over all pixels;
- 3x3 ``same`` kernels run as ``extract_patches`` + ``matmul`` (the patch layout
  ``kh, kw, c_in`` is the kernel's) on maps of at most 200 pixels with at least 512 input
  channels, or at most 16 pixels with at least 256: the shapes where it won in both
  float32 and bfloat16;
- everything else is Keras' convolution.

The weights, config and results are those of ``keras.layers.Conv2D`` (up to float
rounding), so checkpoints and by-name loading do not depend on the choice.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# (maximum map pixels, minimum input channels) where 3x3 patches + matmul wins
PATCHES_RULES = ((200, 512), (16, 256))


@keras.saving.register_keras_serializable(package="detectlab")
class AdaptiveConv2D(keras.layers.Conv2D):
    def convolution_op(self, inputs, kernel):
        mode = self._matmul_mode(inputs.shape)
        if mode is None:
            return super().convolution_op(inputs, kernel)
        cin, cout = kernel.shape[2], kernel.shape[3]
        shape = tf.shape(inputs)
        if mode == "patches":
            inputs = tf.image.extract_patches(inputs, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
        flat = tf.reshape(inputs, [-1, kernel.shape[0] * kernel.shape[1] * cin])
        out = tf.matmul(flat, tf.reshape(kernel, [-1, cout]))
        return tf.reshape(out, tf.concat([shape[:3], [cout]], 0))

    def _matmul_mode(self, shape) -> str | None:
        if (
            self.data_format != "channels_last"
            or tuple(self.strides) != (1, 1)
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or len(shape) != 4
        ):
            return None
        if tuple(self.kernel_size) == (1, 1):
            return "pointwise"
        if tuple(self.kernel_size) == (3, 3) and self.padding == "same":
            h, w, c = shape[1], shape[2], shape[3]
            if h is not None and w is not None and c is not None:
                if any(h * w <= pixels and c >= channels for pixels, channels in PATCHES_RULES):
                    return "patches"
        return None
