"""Building blocks of the face-vid2vid renderer (paper Sec. 3.3; Wang et al. 2021, "One-Shot Free-View").

Smallest first: coordinate grids and keypoint heatmaps, then 2-D / 3-D conv blocks, the two hourglasses
(the keypoint detector's 2-D -> 3-D one and the dense-motion 3-D one), and last the SPADE decoder blocks.

Layer sizes, defaults and the order of operations follow ``src/facerender/modules/util.py`` of the
official SadTalker code (itself from face-vid2vid). The official ``SynchronizedBatchNorm`` behaves like
``nn.BatchNorm`` on one device, so plain BatchNorm is used. Nearest-neighbour upsampling and
``grid_sample(align_corners=False)`` are the official defaults; they are written out here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "make_coordinate_grid",
    "keypoints_to_gaussian",
    "AntiAliasDownsample2d",
    "FOLD_MIN_KERNEL",
    "shallow_conv3d",
    "SameBlock2d",
    "DownBlock2d",
    "DownBlock3d",
    "UpBlock3d",
    "ResBlock3d",
    "KPHourglass",
    "HourglassEncoder3d",
    "HourglassDecoder3d",
    "Hourglass3d",
    "SPADE",
    "SPADEResnetBlock",
]


# ---------------------------------------------------------------------------------------------
# Coordinate grids and keypoint heatmaps
# ---------------------------------------------------------------------------------------------
def _axis(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """n points evenly spread over [-1, 1] (computed as 2 * (i / (n-1)) - 1, as the official code does)."""
    i = torch.arange(n, device=device).to(dtype)
    return 2 * (i / (n - 1)) - 1


def make_coordinate_grid(spatial_size: tuple[int, int, int], dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 3-D grid: [D, H, W, 3] with last axis (x, y, z), each in [-1, 1].

    x runs along W, y along H, z along D: the layout ``F.grid_sample`` expects for a 5-D input.
    """
    d, h, w = spatial_size
    x, y, z = _axis(w, dtype, device), _axis(h, dtype, device), _axis(d, dtype, device)
    xx = x.view(1, 1, w).expand(d, h, w)
    yy = y.view(1, h, 1).expand(d, h, w)
    zz = z.view(d, 1, 1).expand(d, h, w)
    return torch.stack([xx, yy, zz], dim=-1)


def keypoints_to_gaussian(kp: torch.Tensor, spatial_size: tuple[int, int, int], variance: float) -> torch.Tensor:
    """Gaussian blob around each keypoint: kp [B, K, 3] -> [B, K, D, H, W], exp(-|p - kp|^2 / (2 variance))."""
    grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)  # [D, H, W, 3]
    diff = grid[None, None] - kp[:, :, None, None, None, :]  # [B, K, D, H, W, 3]
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


# ---------------------------------------------------------------------------------------------
# Conv blocks (conv -> BatchNorm -> ReLU, with optional pooling / upsampling)
# ---------------------------------------------------------------------------------------------
class AntiAliasDownsample2d(nn.Module):
    """Gaussian blur then stride-(1/scale) subsampling: [B, C, H, W] -> [B, C, H*scale, W*scale].

    sigma = (1/scale - 1) / 2 and kernel size 2*round(4 sigma) + 1 (13 for scale 0.25). The kernel is a
    persistent buffer named ``weight`` because the official checkpoints store it (and load it back). The official
    code blurs every pixel and then keeps every (1/scale)-th; here the conv is strided, which computes only the kept
    ones (the same sums; 1/64 of the products at scale 1/8, the loss pyramid's coarsest level).
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad_before = size // 2
        self.pad_after = self.pad_before - 1 if size % 2 == 0 else self.pad_before
        self.step = int(1 / scale)
        self.scale = scale
        grid = torch.arange(size, dtype=torch.float32)
        g = torch.exp(-((grid - (size - 1) / 2) ** 2) / (2 * sigma**2)) if sigma > 0 else torch.ones(size)
        kernel = g[:, None] * g[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        a, b = self.pad_before, self.pad_after  # strided: the blurred pixels that the subsampling keeps, only
        return F.conv2d(F.pad(x, (a, b, a, b)), self.weight, stride=self.step, groups=x.shape[1])


# ---------------------------------------------------------------------------------------------
# A 3-D conv over a shallow volume, for training
# ---------------------------------------------------------------------------------------------
FOLD_MIN_KERNEL = 7  # folded 3x3x3 convs at depth 4 measured slower than oneDNN's own (2-core EPYC)


def shallow_conv3d(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a Conv3d over a volume x [B, C_in, D, H, W]; when autograd records it, the volume is no deeper
    than the kernel reaches (D <= k_d // 2 + 1, so every output depth sees every input depth) and the kernel is
    >= ``FOLD_MIN_KERNEL`` wide, computed as one Conv2d of the depths stacked into channels: weight
    [C_out * D, C_in * D, k, k] with block (d, d') = the kernel's depth tap d' - d + k_d // 2. Same result to float
    rounding (~1e-6 relative).

    Why: oneDNN's Conv3d backward is slow at small depth. The CPU preset's dense-motion ``mask`` conv (56 -> 16
    channels, 7x7x7, over 4 x 16 x 16) took 0.38 s forward + backward per step of 8 pairs against 0.08 s folded,
    over a third of a face-vid2vid training step (2-core EPYC, one thread). Without autograd (inference, held-out
    scoring), for deeper volumes (the official 16 x 64 x 64, where folding computes 2.5x the products) and for
    anything but a plain stride-1, 'same'-padded Conv3d (e.g. a precision policy's replacement), ``conv(x)``."""
    if not (torch.is_grad_enabled() and type(conv) is nn.Conv3d and x.dim() == 5):
        return conv(x)
    kd, kh, kw = conv.kernel_size
    depth = x.shape[2]
    if (kh != kw or kh < FOLD_MIN_KERNEL or kd % 2 == 0 or depth > kd // 2 + 1 or conv.groups != 1
            or conv.padding_mode != "zeros" or tuple(conv.stride) != (1, 1, 1) or tuple(conv.dilation) != (1, 1, 1)
            or tuple(conv.padding) != (kd // 2, kh // 2, kw // 2)):
        return conv(x)
    b, cin, _, h, w = x.shape
    cout = conv.out_channels
    d = torch.arange(depth, device=x.device)
    taps = d[None, :] - d[:, None] + kd // 2  # [D_out, D_in]: the depth tap joining them
    weight = conv.weight[:, :, taps]  # [C_out, C_in, D_out, D_in, k, k]
    weight = weight.permute(2, 0, 3, 1, 4, 5).reshape(depth * cout, depth * cin, kh, kw)
    stacked = x.transpose(1, 2).reshape(b, depth * cin, h, w)  # [B, D * C_in, H, W]
    y = F.conv2d(stacked, weight, None, padding=kh // 2).view(b, depth, cout, h, w).transpose(1, 2)
    return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1, 1)


class SameBlock2d(nn.Module):
    """conv -> BN -> ReLU (or LeakyReLU 0.01), same resolution: [B, Cin, H, W] -> [B, Cout, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, leaky: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU() if leaky else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """conv -> BN -> ReLU -> 2x2 average pool: [B, Cin, H, W] -> [B, Cout, H/2, W/2]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class DownBlock3d(nn.Module):
    """conv3d -> BN -> ReLU -> (1,2,2) average pool: [B, Cin, D, H, W] -> [B, Cout, D, H/2, W/2]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """nearest (1,2,2) upsample -> conv3d -> BN -> ReLU: [B, Cin, D, H, W] -> [B, Cout, D, 2H, 2W]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    """Pre-activation residual block (BN -> ReLU -> conv) x 2 + skip: [B, C, D, H, W] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels at hourglass level ``level``: block_expansion * 2^level, capped at max_features."""
    return min(max_features, block_expansion * 2**level)


# ---------------------------------------------------------------------------------------------
# Hourglasses
# ---------------------------------------------------------------------------------------------
class KPHourglass(nn.Module):
    """The keypoint detector's hourglass: 2-D encoder, 1x1 conv, reshape to 3-D, 3-D decoder.

    [B, Cin, H, W] -> (num_blocks DownBlock2d) [B, C_n, H/2^n, W/2^n] -> 1x1 conv [B, reshape_channel, ...]
    -> view [B, reshape_channel/depth, depth, h, w] -> (num_blocks UpBlock3d) [B, block_expansion, depth, H, W].
    """

    def __init__(self, *, in_channels: int, block_expansion: int, max_features: int, num_blocks: int,
                 reshape_channel: int, reshape_depth: int):
        super().__init__()
        w = lambda level: _width(block_expansion, max_features, level)  # noqa: E731
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_channels if i == 0 else w(i), w(i + 1)) for i in range(num_blocks)
        )
        self.conv = nn.Conv2d(w(num_blocks), reshape_channel, 1)
        if reshape_channel % reshape_depth or reshape_channel // reshape_depth != w(num_blocks):
            raise ValueError(
                f"reshape_channel ({reshape_channel}) must be reshape_depth ({reshape_depth}) x the deepest width "
                f"({w(num_blocks)}) so that the 3-D decoder starts from that width"
            )
        self.up_blocks = nn.ModuleList(UpBlock3d(w(num_blocks - i), w(num_blocks - i - 1)) for i in range(num_blocks))
        self.reshape_depth = reshape_depth
        self.out_channels = w(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.down_blocks:
            x = block(x)
        x = self.conv(x)
        b, c, h, w = x.shape
        x = x.view(b, c // self.reshape_depth, self.reshape_depth, h, w)  # 2-D channels -> 3-D depth
        for block in self.up_blocks:
            x = block(x)
        return x


class HourglassEncoder3d(nn.Module):
    """[B, Cin, D, H, W] -> list of num_blocks+1 features, the input first, each next one half as wide in H, W."""

    def __init__(self, *, in_channels: int, block_expansion: int, max_features: int, num_blocks: int):
        super().__init__()
        w = lambda level: _width(block_expansion, max_features, level)  # noqa: E731
        self.down_blocks = nn.ModuleList(
            DownBlock3d(in_channels if i == 0 else w(i), w(i + 1)) for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder3d(nn.Module):
    """U-Net decoder: upsample, concatenate the matching encoder feature, repeat; then conv -> BN -> ReLU.

    Output: [B, block_expansion + Cin, D, H, W] (the last skip is the hourglass input itself).
    """

    def __init__(self, *, in_channels: int, block_expansion: int, max_features: int, num_blocks: int):
        super().__init__()
        w = lambda level: _width(block_expansion, max_features, level)  # noqa: E731
        self.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * w(i + 1), w(i)) for i in reversed(range(num_blocks))
        )
        self.out_channels = block_expansion + in_channels
        self.conv = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = features[-1]
        for block, skip in zip(self.up_blocks, reversed(features[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass3d(nn.Module):
    """3-D U-Net: [B, Cin, D, H, W] -> [B, block_expansion + Cin, D, H, W]."""

    def __init__(self, *, in_channels: int, block_expansion: int, max_features: int, num_blocks: int):
        super().__init__()
        kw = dict(in_channels=in_channels, block_expansion=block_expansion, max_features=max_features,
                  num_blocks=num_blocks)
        self.encoder = HourglassEncoder3d(**kw)
        self.decoder = HourglassDecoder3d(**kw)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# ---------------------------------------------------------------------------------------------
# SPADE (Park et al. 2019) blocks of the generator's decoder
# ---------------------------------------------------------------------------------------------
class SPADE(nn.Module):
    """Spatially-adaptive normalisation: InstanceNorm(x) * (1 + gamma(seg)) + beta(seg).

    x [B, C, H, W]; seg [B, Cseg, h, w] is resized (nearest) to H x W first.
    """

    def __init__(self, channels: int, seg_channels: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(seg_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)  # nn.InstanceNorm2d(affine=False)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Residual block with SPADE norms and spectral-normalised convs: [B, Cin, H, W] -> [B, Cout, H, W].

    Main path: (SPADE -> LeakyReLU 0.2 -> conv3x3) x 2, via min(Cin, Cout) channels. Shortcut: identity,
    or SPADE -> 1x1 conv (no bias) when Cin != Cout. Every conv is wrapped in
    ``torch.nn.utils.spectral_norm`` so the state-dict keys are ``weight_orig``, ``weight_u``,
    ``weight_v`` as in the official checkpoints (in eval mode the stored ``weight_u`` / ``weight_v`` are used as
    they are).
    """

    def __init__(self, in_channels: int, out_channels: int, seg_channels: int, hidden: int = 128):
        super().__init__()
        sn = nn.utils.spectral_norm
        middle = min(in_channels, out_channels)
        self.learned_shortcut = in_channels != out_channels
        self.conv_0 = sn(nn.Conv2d(in_channels, middle, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(middle, out_channels, 3, padding=1))
        self.norm_0 = SPADE(in_channels, seg_channels, hidden)
        self.norm_1 = SPADE(middle, seg_channels, hidden)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(in_channels, out_channels, 1, bias=False))
            self.norm_s = SPADE(in_channels, seg_channels, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return skip + dx
