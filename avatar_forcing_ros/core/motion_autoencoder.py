"""LIA motion autoencoder: appearance encoder, motion head + direction basis, flow-warping decoder.

Avatar Forcing generates in the latent space of this autoencoder (Wang et al., "Latent Image
Animator"). Sizes come from `AvatarForcingConfig`:
- `input_size` S (512 official, 64 parity-tiny), `dim_w` (latent width; also the encoder's
  output width and the decoder's style width), `dim_m` motion directions (20),
- `channel_divisor` divides both channel tables (8 for parity-tiny), `channel_multiplier`
  scales the decoder's >=64-px stages as in StyleGAN2.

Data flow (every image is (B, 3, S, S) in [-1, 1]):
- appearance:  s_r, feats = enc.net_app(img)          s_r (B, dim_w), feats = [8px, 16px, ..., S px]
- coefficients: r_lambda = enc.fc(s_r)                 (B, dim_m); `fc` has no activations
- direction:   r = dec.direction(r_lambda)             (B, dim_w) = r_lambda @ Q^T, Q from QR(W + 1e-8)
- decoding:    img = dec(s_r + r_d, feats)             the reference motion r_s is NOT added: the
  generated latents r_d are absolute motions in the direction space.

Parameter names (`enc.net_app.convs.*`, `enc.fc.*`, `dec.direction.weight`, `dec.convs.*`,
`dec.to_rgbs.*`, `dec.to_flows.*`, ...) equal the release checkpoint's `motion_autoencoder.*`
keys without that prefix. `dec.to_rgb1.*` and every `noise.weight` exist only so that the file
loads; they never affect the output.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import AvatarForcingConfig
from .lia_layers import (ConstantInput, EqualConv2d, EqualLinear, ResBlock, StyledConv, ToFlow,
                         ToRGB, conv_layer)

# Channel width per resolution of the release model (both encoder and decoder).
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def channel_table(cfg: AvatarForcingConfig, multiplier: int = 1) -> dict[int, int]:
    """Channels per resolution; resolutions >= 64 px are scaled by `multiplier` (decoder only)."""
    return {r: (c * (multiplier if r >= 64 else 1)) // cfg.channel_divisor
            for r, c in _BASE_CHANNELS.items()}


def _log2_size(size: int) -> int:
    log = int(math.log2(size))
    if 2 ** log != size or size < 8:
        raise ValueError(f"input_size must be a power of two >= 8, got {size}")
    return log


# ---- encoder -----------------------------------------------------------------------------
class AppearanceNet(nn.Module):
    """1x1 conv, then residual blocks halving the size down to 4 px, then a 4x4 conv to dim_w.

    Returns the (B, dim_w) code and the feature pyramid [8, 16, ..., S] px that the decoder warps.
    """

    def __init__(self, cfg: AvatarForcingConfig):
        super().__init__()
        ch = channel_table(cfg)
        log = _log2_size(cfg.input_size)
        self.convs = nn.ModuleList([conv_layer(3, ch[cfg.input_size], 1)])
        in_ch = ch[cfg.input_size]
        for i in range(log, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            self.convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs.append(EqualConv2d(in_ch, cfg.dim_w, 4, padding=0, bias=False))

    def forward(self, img: torch.Tensor, with_feats: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Without the pyramid (user frames: only the code is needed) each layer's output is freed
        # as the next one is made (about 60 MB less held at 512 px).
        outs = []
        h = img                                                            # (B, 3, S, S)
        for conv in self.convs:
            h = conv(h)
            if with_feats:
                outs.append(h)
        code = h.flatten(1)                                                # (B, dim_w)
        feats = outs[-3::-1]                                               # 8 px ... S px (or [])
        return code, feats


class Encoder(nn.Module):
    """Appearance network `net_app` + motion head `fc` (5 EqualLinear, no activation between)."""

    def __init__(self, cfg: AvatarForcingConfig):
        super().__init__()
        self.net_app = AppearanceNet(cfg)
        dims = [cfg.dim_w] * 5 + [cfg.dim_m]
        self.fc = nn.Sequential(*[EqualLinear(dims[i], dims[i + 1]) for i in range(5)])

    def forward(self, img: torch.Tensor, with_feats: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net_app(img, with_feats)


# ---- decoder -----------------------------------------------------------------------------
class Direction(nn.Module):
    """Orthonormal motion basis: Q of the reduced QR of (weight + 1e-8), weight (dim_w, dim_m).

    `forward(coeffs)` (B, dim_m) -> coeffs @ Q^T (B, dim_w); `basis()` -> Q (dim_w, dim_m).
    The sign convention of Q is LAPACK's (torch.linalg.qr), as in the release model. Q is
    computed in float32 whatever the module's dtype, then cast to that dtype.
    """

    def __init__(self, dim_w: int, dim_m: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim_w, dim_m))

    def basis(self) -> torch.Tensor:
        # torch.linalg.qr has no float16/bfloat16 kernels: factor in float32 and cast
        # back. For a float32 weight both casts are no-ops, so the result is unchanged.
        w = self.weight.float() + 1e-8
        q, _ = torch.linalg.qr(w)
        return q.to(self.weight.dtype)                                     # (dim_w, dim_m)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs @ self.basis().T                                     # (B, dim_w)


_GRID_CACHE: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}


def warp(feat: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of feat (N, C, H, W) at grid (N, H, W, 2), zeros outside the image.

    Half-precision inputs are sampled in float32: torch's CPU kernel computes the pixel
    coordinates in the input's dtype, and bfloat16 (a spacing of 2 between 256 and 512) puts
    the last pixels of a 512 px map outside the image (zeros instead of the edge, and a
    segfault in torch 2.13 with the renderer at dtype bfloat16).
    """
    if feat.dtype in (torch.float16, torch.bfloat16):
        return warp(feat.float(), grid.float()).to(feat.dtype)
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def identity_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, size, size, 2) sampling grid of the undeformed image, [..., 0] = x, [..., 1] = y.

    Built in float64 with numpy's linspace and rounded once, as the release model does.
    """
    key = (size, str(device), dtype)
    if key not in _GRID_CACHE:
        xs = np.linspace(-1.0, 1.0, size)
        grid = np.stack(np.meshgrid(xs, xs), axis=2)                       # (S, S, 2)
        _GRID_CACHE[key] = torch.from_numpy(grid).to(device=device, dtype=dtype)[None]
    return _GRID_CACHE[key]


class Synthesis(nn.Module):
    """StyleGAN2-like decoder that, at every resolution, warps the matching appearance feature.

    One latent (B, dim_w) is the style of every layer. Stage k (8 px, 16 px, ...):
      out  = two StyledConvs (the first upsamples)
      flow = ToFlow(out) (+ upsampled flow of the previous stage)
      grid = tanh(flow[:, :2]) + identity;  mask = sigmoid(flow[:, 2])
      warp = grid_sample(feat_k, grid, bilinear, zeros, align_corners=False) * mask
      out  = warp + out * (1 - mask);  rgb = ToRGB(warp) (+ upsampled rgb)
    The image is the accumulated RGB.
    """

    def __init__(self, cfg: AvatarForcingConfig):
        super().__init__()
        ch = channel_table(cfg, cfg.channel_multiplier)
        log = _log2_size(cfg.input_size)
        style = cfg.style_dim
        self.direction = Direction(style, cfg.dim_m)
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style)
        self.to_rgb1 = ToRGB(ch[4], upsample=False)                        # unused (file format)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, log + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style))
            self.to_rgbs.append(ToRGB(out_ch))
            self.to_flows.append(ToFlow(out_ch, style))
            in_ch = out_ch

    def forward(self, latent: torch.Tensor, feats: list[torch.Tensor],
                return_grids: bool = False):
        """latent (N, dim_w), feats [(N, C_k, H_k, H_k)] -> image (N, 3, S, S) [, grids per stage]."""
        if len(feats) != len(self.to_flows):
            raise ValueError(f"expected {len(self.to_flows)} appearance features, got {len(feats)}")
        out = self.conv1(self.input(latent.shape[0]), latent)              # (N, C, 4, 4)
        rgb = flow = None
        grids = []
        for k, feat in enumerate(feats):
            out = self.convs[2 * k](out, latent)
            out = self.convs[2 * k + 1](out, latent)                       # (N, C_k, H_k, H_k)
            flow = self.to_flows[k](out, latent, flow)                     # (N, 3, H_k, H_k)
            grid = torch.tanh(flow[:, :2]).permute(0, 2, 3, 1) \
                + identity_grid(out.shape[2], out.device, out.dtype)       # (N, H_k, H_k, 2)
            mask = torch.sigmoid(flow[:, 2:3])                             # (N, 1, H_k, H_k)
            warped = warp(feat, grid) * mask
            out = warped + out * (1.0 - mask)
            rgb = self.to_rgbs[k](warped, rgb)
            grids.append(grid)
        return (rgb, grids) if return_grids else rgb


# ---- the autoencoder -----------------------------------------------------------------------
class MotionAutoencoder(nn.Module):
    """Container with submodules `enc` (Encoder) and `dec` (Synthesis); see the module docstring.

    Public API (all under no-grad use; inputs float, on the module's device):
    - encode_appearance(img (B,3,S,S)) -> (s_r (B,dim_w), r_s_lambda (B,dim_m), feats list)
      then r_s = dec.direction(r_s_lambda) is the reference motion that conditions the generator.
    - encode_motion(frames (N,3,S,S)) -> (N, dim_w): user motion Direction(fc(appearance(frame))).
    - decode(s_r, feats, r_d) -> images: latents s_r + r_d decoded in blocks.
    """

    def __init__(self, cfg: AvatarForcingConfig):
        super().__init__()
        self.cfg = cfg
        self.enc = Encoder(cfg)
        self.dec = Synthesis(cfg)

    def encode_appearance(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Portrait (B, 3, S, S) in [-1, 1] -> (s_r (B, dim_w), r_s_lambda (B, dim_m), feats)."""
        self._check_images(img)
        s_r, feats = self.enc(img)
        return s_r, self.enc.fc(s_r), feats

    def encode_motion(self, frames: torch.Tensor, chunk: int = 50) -> torch.Tensor:
        """User frames (N, 3, S, S) in [-1, 1] -> motion latents (N, dim_w), `chunk` frames at a time."""
        self._check_images(frames)
        # channels-last frames run the encoder's convolutions without converting each layer's
        # input and output to oneDNN's own layout (CPU, 512 px: 0.5 s instead of 0.8 s, 112 MB
        # of transient memory instead of 144); the codes differ by fp32 round-off (~4e-7)
        layout = torch.contiguous_format if torch.onnx.is_in_onnx_export() else torch.channels_last
        out = []
        for i in range(0, frames.shape[0], chunk):
            code, _ = self.enc(frames[i:i + chunk].contiguous(memory_format=layout), with_feats=False)
            out.append(self.dec.direction(self.enc.fc(code)))
        return torch.cat(out, dim=0)                                       # (N, dim_w)

    def decode(self, s_r: torch.Tensor, feats: list[torch.Tensor], r_d: torch.Tensor,
               block: int | None = None) -> torch.Tensor:
        """Decode motion latents.

        s_r (B, dim_w) or (dim_w,); feats from `encode_appearance` (batch B); r_d (T, dim_w)
        -> (T, 3, S, S), or r_d (B, T, dim_w) -> (B, T, 3, S, S).
        Runs in blocks of `block` frames (default num_frames_per_block); a short last block is
        replicate-padded to full size and cropped, as the reference does.
        """
        squeeze = r_d.dim() == 2
        r_d = r_d[None] if squeeze else r_d                                # (B, T, D)
        s_r = s_r.reshape(-1, 1, r_d.shape[-1])                            # (B, 1, D)
        b, t, d = r_d.shape
        if s_r.shape[0] != b or any(f.shape[0] != b for f in feats):
            raise ValueError(f"batch mismatch: r_d {tuple(r_d.shape)}, s_r {tuple(s_r.shape)}, "
                             f"feats {[tuple(f.shape) for f in feats]}")
        block = block or self.cfg.num_frames_per_block
        # (B*block, C, H, W); a single portrait is broadcast without copying (66 MB a frame at
        # 512 px). contiguous() because torch's CPU grid_sample returns NaN for a batch-expanded
        # channels_last float16/bfloat16 input, and a permuted (H, W, 3) image's features are
        # channels_last (float32 results are the same either way).
        feats_rep = [f.contiguous().expand(block, -1, -1, -1) if b == 1
                     else f.repeat_interleave(block, dim=0) for f in feats]
        images = []
        for start in range(0, t, block):
            chunk = r_d[:, start:start + block]                            # (B, n, D)
            n = chunk.shape[1]
            if n < block:
                chunk = F.pad(chunk, (0, 0, 0, block - n), mode="replicate")
            latent = (s_r + chunk).reshape(b * block, d)
            img = self.dec(latent, feats_rep)                              # (B*block, 3, S, S)
            img = img.view(b, block, *img.shape[1:])
            images.append(img[:, :n])
        out = torch.cat(images, dim=1)                                     # (B, T, 3, S, S)
        return out[0] if squeeze else out

    def _check_images(self, img: torch.Tensor) -> None:
        s = self.cfg.input_size
        if img.dim() != 4 or tuple(img.shape[1:]) != (3, s, s):
            raise ValueError(f"expected images (N, 3, {s}, {s}), got {tuple(img.shape)}")
