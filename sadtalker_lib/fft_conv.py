"""Large-kernel convolutions by FFT (the ``fft-conv`` technique of ``sadtalker_lib.precision``; float32, for CPUs
without native bfloat16).

The dense-motion network ends in a 7x7x7 ``mask`` conv over its full-resolution output (112 -> 16 channels over a
16 x 64 x 64 volume at 256 px: ~80 GFLOP a frame, the largest single conv per frame once the SPADE decoder's convs
are Winograd convs). A product in the frequency domain replaces the 49 in-plane taps:

* in-plane (H, W): overlap-save over tiles. Each output tile of ``TILE`` x ``TILE`` reads an input tile of
  L = TILE + k - 1; per tile and channel one real FFT of L x L, the channel contraction is a complex matrix product
  per frequency, one inverse FFT per output tile and channel, and the first TILE x TILE values of the circular
  cross-correlation are the tile's output (the wrapped part is dropped).
* depth (3-D kernels): the k_d depth taps stay direct, as k_d shifted products accumulated in the frequency domain.

The kernel's FFT is computed once, in float64, and stored as complex64. Measured on a 2-core Xeon with oneDNN
capped at AVX2, the mask conv of 2 frames at 256 px: 0.44 s against 1.00 s direct, ~4e-6 relative difference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FFTConv", "fft_worthwhile", "kernel_spectrum", "fft_conv", "TILE", "MIN_KERNEL", "MIN_OUT"]

TILE = 16  # output tile side; L = TILE + k - 1 = 22 for k = 7 (measured fastest of 8, 10, 16, 26, 32)
MIN_KERNEL = 7  # smaller in-plane kernels are faster direct (or as Winograd convs)
# the input's FFT is shared by the output channels, so the FFT pays with several of them: the 1-output occlusion
# conv (1792 -> 1, 7x7 at 64x64) measured 0.22 s by FFT against 0.13 s direct (2 frames, AVX2 cap)
MIN_OUT = 8


def _geometry(conv: nn.Module) -> tuple[int, int] | None:
    """(depth kernel, in-plane kernel) of a conv this module computes, or None."""
    if type(conv) not in (nn.Conv2d, nn.Conv3d) or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    k = conv.kernel_size
    if (any(s != 1 for s in conv.stride) or any(d != 1 for d in conv.dilation) or not isinstance(conv.padding, tuple)
            or any(kk % 2 == 0 for kk in k) or tuple(p for p in conv.padding) != tuple(kk // 2 for kk in k)
            or k[-1] != k[-2]):
        return None
    return (k[0] if len(k) == 3 else 1), k[-1]


def fft_worthwhile(conv: nn.Module) -> bool:
    """A stride-1, 'same'-padded, odd-kernel Conv2d / Conv3d with a square in-plane kernel >= ``MIN_KERNEL`` and
    >= ``MIN_OUT`` output channels."""
    g = _geometry(conv)
    return g is not None and g[1] >= MIN_KERNEL and conv.out_channels >= MIN_OUT


def kernel_spectrum(weight: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Kernels [K, C, kd, k, k] -> conj(rFFT2) over an L x L grid (L = tile + k - 1): [L * (L//2 + 1), kd, C, K]
    complex64 (computed in float64)."""
    if weight.dim() != 5 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"expected [K, C, kd, k, k] kernels, got {tuple(weight.shape)}")
    k = weight.shape[-1]
    size = tile + k - 1
    spec = torch.fft.rfft2(weight.detach().double().cpu(), s=(size, size)).conj()  # [K, C, kd, L, L//2+1]
    kout, c, kd = weight.shape[:3]
    return spec.permute(3, 4, 2, 1, 0).reshape(-1, kd, c, kout).to(torch.complex64).contiguous().to(weight.device)


def fft_conv(x: torch.Tensor, spectrum: torch.Tensor, bias: torch.Tensor | None, k: int,
             tile: int = TILE) -> torch.Tensor:
    """'Same' cross-correlation of x [N, C, D, H, W] float32 with the kernels of ``spectrum``
    (:func:`kernel_spectrum`, in-plane size ``k``, depth size kd = spectrum.shape[1]) -> [N, K, D, H, W]."""
    n, c, d, h, w = x.shape
    nf, kd, c_w, kout = spectrum.shape
    size = tile + k - 1
    if c_w != c or nf != size * (size // 2 + 1):
        raise ValueError(f"kernel spectrum {tuple(spectrum.shape)} does not fit an input with {c} channels and "
                         f"tile {tile}, kernel {k}")
    p, pd = k // 2, kd // 2
    ty, tx = -(-h // tile), -(-w // tile)
    out = x.new_empty(n, kout, d, ty * tile, tx * tile)
    for i in range(n):  # one sample at a time: the frequency-domain tensors are ~(1 + (k-1)/tile)^2 x the input
        xp = F.pad(x[i:i + 1], (p, p + tx * tile - w, p, p + ty * tile - h, pd, pd))  # [1, C, D+2pd, Hp, Wp]
        tiles = xp.unfold(3, size, tile).unfold(4, size, tile)  # [1, C, D', ty, tx, L, L]
        spec_x = torch.fft.rfft2(tiles).reshape(c, d + 2 * pd, ty * tx, nf).permute(3, 1, 2, 0).contiguous()
        acc = None  # [f, D * T, K]
        for t in range(kd):  # the depth taps, direct
            y = torch.matmul(spec_x[:, t:t + d].reshape(nf, d * ty * tx, c), spectrum[:, t])
            acc = y if acc is None else acc.add_(y)
        acc = acc.reshape(size, size // 2 + 1, d, ty, tx, kout).permute(5, 2, 3, 4, 0, 1)  # [K, D, ty, tx, L, Lf]
        y = torch.fft.irfft2(acc, s=(size, size))[..., :tile, :tile]  # the valid (unwrapped) part of each tile
        out[i].view(kout, d, ty, tile, tx, tile).copy_(y.permute(0, 1, 2, 4, 3, 5))
    if ty * tile != h or tx * tile != w:
        out = out[..., :h, :w].contiguous()
    if bias is not None:
        out += bias.view(1, -1, 1, 1, 1)
    return out


class FFTConv(nn.Module):
    """A large-kernel 'same' Conv2d / Conv3d (:func:`fft_worthwhile`) computed with :func:`fft_conv` (its kernel
    spectrum computed once). Same input / output shapes as the conv; other dtypes (and autograd) take the direct
    conv."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, tile: int = TILE):
        super().__init__()
        g = _geometry(conv)
        if g is None:
            raise ValueError(f"the FFT conv replaces stride-1, undilated, ungrouped, zero-padded Conv2d / Conv3d "
                             f"layers with odd kernels, square in-plane, padded to keep the size; got {conv}")
        self.conv3d = isinstance(conv, nn.Conv3d)
        self.k, self.tile, self.padding = g[1], tile, conv.padding
        w = conv.weight.detach().clone()
        self.register_buffer("weight", w)  # for the direct fallback
        self.register_buffer("spectrum", kernel_spectrum(w if self.conv3d else w.unsqueeze(2), tile))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or torch.is_grad_enabled() and x.requires_grad:
            fn = F.conv3d if self.conv3d else F.conv2d
            return fn(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                      padding=self.padding)
        if self.conv3d:
            return fft_conv(x, self.spectrum, self.bias, self.k, self.tile)
        return fft_conv(x.unsqueeze(2), self.spectrum, self.bias, self.k, self.tile).squeeze(2)

    def extra_repr(self) -> str:
        _, kd, c, kout = self.spectrum.shape
        return f"{c}, {kout}, kernel=({kd}, {self.k}, {self.k}), FFT tiles {self.tile}"
