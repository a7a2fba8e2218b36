"""``AdaptiveConv2D``: ``keras.layers.Conv2D`` computed the fastest way for its shape.

A convolution is a matrix product; which formulation runs fastest depends on the shape and
on the CPU. oneDNN's direct convolution is fastest on large feature maps, but it is slow
for weight-heavy layers on small maps, especially for their weight gradient
(forward+backward on 2 cores, bf16: 4x4x512->1024 3x3 83 ms vs 16 ms; 13x13x512->1024 32
vs 19 ms; stride 2 26x26x512->13x13x1024 36 vs 18 ms; 1x1 layers 2-5x). The rules below
were measured on two CPUs: an Intel Xeon with AMX / AVX512-BF16 and an AMD EPYC (Zen 3,
AVX2 only). For ``dilation=1``, ``groups=1``, channels-last layers
(:meth:`AdaptiveConv2D.computation` names the choice):

- ``pointwise``: 1x1 kernels run as one ``matmul`` over all pixels.
- ``strided_pointwise``: a strided 1x1 kernel reads every ``s``-th pixel; slicing those
  out and multiplying (:func:`strided_pointwise`) wins for ResNet's stage 5, where
  oneDNN's gradients are slow: in bfloat16 for 1024 -> 2048 channels (AMX CPU: 1.3-1.7x
  faster forward+backward), and in float32 for 1024 -> 512 and 1024 -> 2048 on CPUs without
  AVX-512 (64 ROI crops of 14x14: 1.7x and 2.8x). Elsewhere the convolution is as fast or
  faster (on stages 3-4 by 1.1-3x).
- ``patches``: 3x3 kernels (any stride, ``same`` or ``valid``) run as ``extract_patches``
  + ``matmul`` (the patch layout ``kh, kw, c_in`` is the kernel's) when the *output* map
  has at most 200 pixels and the input at least 512 channels, or at most 16 pixels and
  256 channels; where ``same_conv`` applies, only the second rule holds.
- ``window``: a ``valid`` kernel as large as its input (the Mask R-CNN box head's 7x7 "FC
  as conv") is one ``matmul`` of the flattened input.
- ``same_conv``: stride-1 ``same`` convolutions with odd kernels, in float32 on CPUs
  without AVX-512, are oneDNN's convolution whose input gradient runs as a forward
  convolution too (:func:`same_conv`): oneDNN's backward-data kernel there was 1.1-2.2x
  slower than that on every shape measured (Mask R-CNN's mask head, 132 ROIs of 14x14x256:
  450 vs 209 ms; VGG16's conv1_2 at 608 px: 892 vs 437 ms).
- ``None``: Keras' convolution.

``AdaptiveConv2DTranspose`` is ``keras.layers.Conv2DTranspose`` whose non-overlapping case
(kernel = stride, e.g. the Mask R-CNN mask head's 2x2 stride-2 ``mrcnn_mask_deconv``) runs in
bfloat16 as one matmul to ``s * s`` times the channels and ``depth_to_space``
(:func:`transposed_as_matmul`): on an AVX512-BF16 CPU (AMD Zen 4) forward+backward of 256 ROIs
of 14x14x256 took 543 vs 762 ms and 860 vs 1168 ms in two runs; in float32 both took the same
(950 vs 963 ms), so float32 keeps Keras' kernel.

Weights, config and results are those of ``keras.layers.Conv2D`` (up to float rounding),
so checkpoints and by-name loading do not depend on the choice. Graphs traced inside
:func:`portable_convolutions` (exports) use Keras' convolution everywhere: TFLite and ONNX
have no ``ExtractImagePatches``.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from detectlab.utils import cpu_flags

# (maximum output-map pixels, minimum input channels) where 3x3 patches + matmul wins; against
# same_conv (stride 1, where it applies) only on the smallest maps (ResNet stage 5 on 64 ROI
# crops of 7x7x512: same_conv 334 ms, patches 454 ms; 4x4x512 -> 1024: 118 vs 95 ms)
PATCHES_RULES = ((200, 512), (16, 256))
PATCHES_RULES_BESIDE_SAME_CONV = ((16, 256),)
# minimum (input, output) channels where a strided 1x1 runs as slice + matmul, by compute
# dtype (float32 only on CPUs without AVX-512, where it was measured)
STRIDED_POINTWISE_MIN_CHANNELS = {"bfloat16": (1024, 2048), "float32": (1024, 1)}
# minimum input channels of a stride-1 convolution whose input gradient runs as a convolution
# (a network's first layer sees the 3-channel image, whose gradient nobody uses)
SAME_CONV_MIN_CHANNELS = 16
_PORTABLE = [False]  # set while tracing graphs for export


@contextlib.contextmanager
def portable_convolutions():
    """While active, every ``AdaptiveConv2D`` traces as Keras' own convolution."""
    previous, _PORTABLE[0] = _PORTABLE[0], True
    try:
        yield
    finally:
        _PORTABLE[0] = previous


def strided_pointwise(inputs, kernel, stride: int):
    """A 1x1 convolution of stride ``stride`` (``inputs (B, H, W, Cin)``, ``kernel (1, 1,
    Cin, Cout)``) as a slice of the pixels it reads and one matmul. Its input gradient puts
    the sliced gradient back between zeros with reshapes, not with a scatter."""

    @tf.custom_gradient
    def run(x, k):
        picked = x[:, ::stride, ::stride, :]
        shape = tf.shape(picked)
        cin, cout = k.shape[2], k.shape[3]
        rows, w = tf.reshape(picked, [-1, cin]), tf.reshape(k, [cin, cout])
        y = tf.reshape(tf.matmul(rows, w), tf.concat([shape[:3], [cout]], 0))

        def grad(dy):
            dy = tf.reshape(dy, [-1, cout])
            dk = tf.reshape(tf.matmul(rows, dy, transpose_a=True), tf.shape(k))
            dpicked = tf.reshape(tf.matmul(dy, w, transpose_b=True), shape)
            return spread(dpicked, stride, tf.shape(x)), dk

        return y, grad

    return run(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def same_conv(inputs, kernel):
    """A stride-1 ``same`` convolution with an odd kernel whose input gradient is computed
    as a forward convolution of the output gradient with the flipped kernel, in/out
    channels swapped (its exact adjoint). On AVX2 CPUs oneDNN's backward-data kernel is
    1.1-2.2x slower than that forward convolution (2x608x608x64 -> 64: 892 vs 437 ms)."""

    @tf.custom_gradient
    def run(x, k):
        def grad(dy):
            flipped = tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2])
            dx = tf.nn.conv2d(dy, flipped, 1, "SAME")
            dk = tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(k), dy, [1, 1, 1, 1], "SAME")
            return dx, dk

        return tf.nn.conv2d(x, k, 1, "SAME"), grad

    return run(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def transposed_as_matmul(inputs, kernel, stride: int):
    """A transposed convolution whose kernel equals its stride (``inputs (B, H, W, Cin)``,
    ``kernel (s, s, Cout, Cin)``, Keras' layout) -> ``(B, s H, s W, Cout)``: each input pixel
    times the kernel gives its own ``s x s`` block of the output (no windows overlap), so it is
    one matmul to ``(a, b, Cout)`` columns and ``depth_to_space``, whose block order that is."""
    s, cout, cin = stride, kernel.shape[2], kernel.shape[3]
    weights = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [cin, s * s * cout])
    shape = tf.shape(inputs)
    blocks = tf.matmul(tf.reshape(inputs, [-1, cin]), weights)
    return tf.nn.depth_to_space(tf.reshape(blocks, tf.concat([shape[:3], [s * s * cout]], 0)), s)


def spread(x, stride: int, shape):
    """``x (B, h, w, C)`` -> ``(B, H, W, C)`` (``H, W`` from ``shape``) with ``x[:, i, j]`` at
    ``(stride * i, stride * j)`` and zeros elsewhere: the adjoint of ``[:, ::s, ::s]``."""
    b, h, w, c = tf.unstack(tf.shape(x))
    x = tf.reshape(tf.stack([x] + [tf.zeros_like(x)] * (stride - 1), axis=3), [b, h, w * stride, c])
    x = tf.reshape(tf.stack([x] + [tf.zeros_like(x)] * (stride - 1), axis=2), [b, h * stride, w * stride, c])
    return x[:, : shape[1], : shape[2], :]


@keras.saving.register_keras_serializable(package="detectlab")
class AdaptiveConv2D(keras.layers.Conv2D):
    def convolution_op(self, inputs, kernel):
        mode = self.computation(inputs.shape)
        if mode is None:
            return super().convolution_op(inputs, kernel)
        cout = kernel.shape[3]
        if mode == "strided_pointwise":
            return strided_pointwise(inputs, kernel, self.strides[0])
        if mode == "same_conv":
            return same_conv(inputs, kernel)
        if mode == "window":  # the kernel covers the whole input: one matmul per image
            out = tf.matmul(tf.reshape(inputs, [-1, int(np.prod(inputs.shape[1:]))]), tf.reshape(kernel, [-1, cout]))
            return tf.reshape(out, [-1, 1, 1, cout])
        if mode == "patches":
            stride = self.strides[0]
            inputs = tf.image.extract_patches(
                inputs, [1, 3, 3, 1], [1, stride, stride, 1], [1, 1, 1, 1], self.padding.upper()
            )
        shape = tf.shape(inputs)
        out = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), tf.reshape(kernel, [-1, cout]))
        return tf.reshape(out, tf.concat([shape[:3], [cout]], 0))

    def computation(self, shape) -> str | None:
        """How a call on inputs of ``shape`` (B, H, W, C) runs (see the module docstring)."""
        if _PORTABLE[0] or self.data_format != "channels_last" or tuple(self.dilation_rate) != (1, 1) or self.groups != 1 or len(shape) != 4:
            return None
        strides = tuple(self.strides)
        if tuple(self.kernel_size) == (1, 1):
            if strides == (1, 1):
                return "pointwise"
            return "strided_pointwise" if strides[0] == strides[1] and self._strided_pointwise_wins(shape[3]) else None
        if self.padding == "valid" and tuple(shape[1:3]) == tuple(self.kernel_size):
            return "window"
        h, w, c = shape[1], shape[2], shape[3]
        same = self._input_grad_as_conv_wins(c)
        if tuple(self.kernel_size) == (3, 3) and strides[0] == strides[1] and None not in (h, w, c):
            s = strides[0]
            if self.padding == "same":
                pixels = -(-h // s) * -(-w // s)
            else:
                pixels = ((h - 3) // s + 1) * ((w - 3) // s + 1)
            rules = PATCHES_RULES_BESIDE_SAME_CONV if same else PATCHES_RULES
            if any(pixels <= limit and c >= channels for limit, channels in rules):
                return "patches"
        return "same_conv" if same else None

    def _input_grad_as_conv_wins(self, channels) -> bool:
        """Stride-1 ``same`` convolutions with an odd kernel, in float32 on CPUs without
        AVX-512 (where it was measured), on inputs that are not images (whose gradient is
        never used but would be computed)."""
        odd = all(k % 2 for k in self.kernel_size)
        if self.padding != "same" or tuple(self.strides) != (1, 1) or not odd or (channels or 0) < SAME_CONV_MIN_CHANNELS:
            return False
        return self._measured_dtype() == "float32"

    def _strided_pointwise_wins(self, channels) -> bool:
        rule = STRIDED_POINTWISE_MIN_CHANNELS.get(self._measured_dtype())
        return rule is not None and (channels or 0) >= rule[0] and self.filters >= rule[1]

    def _measured_dtype(self) -> str | None:
        """The compute dtype whose rules hold on this CPU: float32 rules were measured on an
        AVX2 CPU (AMD Zen 3) only, so AVX-512 CPUs keep oneDNN's kernels in float32 (None)."""
        if self.compute_dtype == "float32" and "avx512f" in cpu_flags():
            return None
        return self.compute_dtype


@keras.saving.register_keras_serializable(package="detectlab")
class AdaptiveConv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` (same weights and config) that runs as
    :func:`transposed_as_matmul` where that was measured to win (module docstring)."""

    def call(self, inputs):
        if self.computation(inputs.shape) != "matmul":
            return super().call(inputs)
        outputs = transposed_as_matmul(inputs, self.kernel, self.strides[0])
        if self.use_bias:
            outputs = outputs + self.bias  # a broadcast add: its gradient sums in float32
        return outputs if self.activation is None else self.activation(outputs)

    def computation(self, shape) -> str | None:
        """``"matmul"`` or None (Keras' transposed convolution) for inputs of ``shape``."""
        square = tuple(self.kernel_size) == tuple(self.strides) and self.strides[0] == self.strides[1]
        plain = (self.data_format == "channels_last" and self.output_padding is None
                 and tuple(self.dilation_rate) == (1, 1) and len(shape) == 4)
        if _PORTABLE[0] or not (square and plain) or self.compute_dtype != "bfloat16":
            return None
        return "matmul"
