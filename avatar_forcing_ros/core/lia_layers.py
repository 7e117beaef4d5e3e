"""Building blocks of the LIA motion autoencoder (StyleGAN2-style layers).

Every layer keeps its weights in the *unscaled* form of the release checkpoints and applies
the equalised-learning-rate factor 1/sqrt(fan_in) when it runs, so the parameter tensors load
unchanged. Attribute names (`weight`, `bias`, `modulation`, `blur.kernel`, `conv.0.weight`,
...) are part of the checkpoint format: do not rename them.

Conventions used throughout:
- fused leaky ReLU: leaky_relu(x + b, 0.2) * sqrt(2);
- FIR filter: normalised outer product of [1, 3, 3, 1], scaled by factor**2 when upsampling;
- images and features are (B, C, H, W).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_TAPS = (1, 3, 3, 1)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2), the activation of every LIA layer."""
    return F.leaky_relu(x + bias, LEAKY_SLOPE) * LEAKY_GAIN


def fir_kernel(taps: Sequence[int] = BLUR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """2-D separable FIR kernel: outer(taps, taps) / sum, times `gain`.  # (K, K)"""
    t = torch.tensor(taps, dtype=torch.float32)
    k = t[None, :] * t[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insert upsample by `up`, pad (pad0 before, pad1 after) on both axes, filter, decimate.

    The filter is a true convolution (kernel flipped), applied per channel.
    """
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    # equal padding on both sides is the convolution's own (no padded copy of the input: 34 MB
    # for the encoder's first 512 px feature map); unequal padding needs the copy
    conv_pad = pad[0] if pad[0] == pad[1] and not torch.onnx.is_in_onnx_export() else 0
    if not conv_pad:
        x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw)
    if torch.onnx.is_in_onnx_export():
        # the graph exporter needs a weight of known shape: each channel as a 1-channel image
        out = F.conv2d(x.reshape(b * c, 1, x.shape[2], x.shape[3]), weight)
        out = out.view(b, c, out.shape[2], out.shape[3])
    else:
        # every channel on its own, as one depthwise convolution: the same sums without the
        # 1-channel path's unfolded copy of the input (16x the input: ~220 MB more peak memory
        # for one 512 px frame on a CPU)
        out = F.conv2d(x, weight.expand(c, 1, kh, kw), padding=conv_pad, groups=c)
    return out[:, :, ::down, ::down]


class Blur(nn.Module):
    """FIR low-pass filter with explicit padding (buffer `kernel`)."""

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain=upsample_factor ** 2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 FIR upsampling of a skip image/flow (buffer `kernel`)."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", fir_kernel(gain=factor ** 2))
        p = len(BLUR_TAPS) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d whose weight is scaled by 1/sqrt(in * k * k) at run time."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride,
                        padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with run-time 1/sqrt(in) weight scaling and no activation.

    (The LIA motion head `fc` and every style modulation use it this way.)
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, bias=self.bias)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias then scaled leaky ReLU (parameter `bias`, shape (1, C, 1, 1))."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.onnx.is_in_onnx_export():
            return fused_leaky_relu(x, self.bias)
        # Inference: the input is always the fresh output of the layer before (a convolution), so
        # it is changed in place, the same operations in the same order (the same values): two
        # full-size temporaries fewer (64 MB at 512 px with 32 channels).
        return F.leaky_relu_(x.add_(self.bias), LEAKY_SLOPE).mul_(LEAKY_GAIN)


def conv_layer(in_ch: int, out_ch: int, kernel: int, downsample: bool = False,
               activate: bool = True) -> nn.Sequential:
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU], as an indexed Sequential (checkpoint names).

    With `downsample` the blur pads so that the stride-2 convolution halves the size exactly.
    A layer without activation has no bias at all (the encoder's skip path).
    """
    layers: list[nn.Module] = []
    if downsample:
        p = (len(BLUR_TAPS) - 2) + (kernel - 1)
        layers.append(Blur(pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride=2, padding=0, bias=False))
    else:
        layers.append(EqualConv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False))
    if activate:
        layers.append(FusedLeakyReLU(out_ch))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Encoder residual block: two 3x3 convs (the second halves the size) + 1x1 skip, / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv_layer(in_ch, in_ch, 3)
        self.conv2 = conv_layer(in_ch, out_ch, 3, downsample=True)
        self.skip = conv_layer(in_ch, out_ch, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (StyleGAN2), one weight per sample via grouped convolution.

    weight (1, out, in, k, k) is scaled by 1/sqrt(in*k*k) and by the per-sample style
    s = modulation(w) (B, in); with `demodulate` each output filter is renormalised to unit
    norm (eps 1e-8). With `upsample` a stride-2 transposed convolution is followed by a blur.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_TAPS) - 2) - (kernel - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def _sample_weights(self, style: torch.Tensor) -> torch.Tensor:
        b = style.shape[0]
        s = self.modulation(style).view(b, 1, self.in_ch, 1, 1)           # (B, 1, in, 1, 1)
        w = self.scale * self.weight * s                                   # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8)            # (B, out)
            w = w * demod.view(b, self.out_ch, 1, 1, 1)
        return w

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, _, h, w_ = x.shape
        k = self.kernel
        w = self._sample_weights(style)
        x = x.reshape(1, b * self.in_ch, h, w_)
        if self.upsample:
            wt = w.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, wt, padding=0, stride=2, groups=b)
            out = self.blur(out.view(b, self.out_ch, out.shape[2], out.shape[3]))
            return out
        out = F.conv2d(x, w.reshape(b * self.out_ch, self.in_ch, k, k), padding=k // 2, groups=b)
        return out.view(b, self.out_ch, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    """Holds the checkpoint's `weight`; inference never injects noise, so it is the identity."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StyledConv(nn.Module):
    """ModulatedConv2d -> (no noise) -> FusedLeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))


class ToRGB(nn.Module):
    """1x1 conv + fused leaky ReLU + bias to RGB, plus the upsampled RGB skip of the previous stage.

    Note the leaky ReLU *is* applied to the RGB output (the release model was trained that way).
    """

    def __init__(self, in_ch: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = conv_layer(in_ch, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias                                     # (B, 3, H, W)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Un-demodulated 1x1 modulated conv to 3 channels (2 flow + 1 mask logits) + bias + skip."""

    def __init__(self, in_ch: int, style_dim: int):
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias                              # (B, 3, H, W)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 starting tensor of the synthesis network (parameter `input`)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
