"""Winograd F(4x4, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):
the ``winograd`` technique of ``sadtalker_lib.precision`` (float32, for CPUs without native bfloat16).

A 3x3, stride-1 convolution computes each 4x4 output tile from a 6x6 input tile. In the Winograd domain that is
36 elementwise products instead of 144 multiply-adds per (input channel, output channel, tile), so the channel
contraction becomes 36 matrix products [K, C] x [C, tiles] (one batched GEMM) with 4x fewer multiply-adds than the
direct convolution; the transforms of the input tiles (B^T d B) and of the output tiles (A^T m A) cost O(C + K) per
tile. Per 4x4 output tile:

    Y = A^T [ (G g G^T) * (B^T d B) ] A        g [3, 3] kernel, d [6, 6] input tile, * elementwise

(Lavin & Gray, Eq. 8 with the F(4, 3) matrices of their Sec. 4.2; PyTorch's ``conv2d`` is a cross-correlation, which
is what these matrices compute). The kernel transform G g G^T is done once, in float64. In float32 the result
differs from the direct convolution by ~2e-6 relative (measured on random data and on the parity weights), far below
what a picture shows.

It pays where the GEMM dominates: wide convs (many input and output channels). Measured on a 2-core Xeon with
oneDNN and MKL capped at AVX2, batch 2, against PyTorch's direct (oneDNN) conv, in bands of 2 MB: 512 -> 512
channels at 64x64 2.3x faster, 128 -> 1024 at 64x64 2.1x, 512 -> 256 at 128x128 1.9x, 128 -> 512 at 256x256 1.95x,
128 -> 128 at 256x256 1.4x; narrower ones lose (256 -> 64 at 256x256: 0.75x, 64 -> 64: 0.92x), hence
:func:`worthwhile`. F(6x6, 3x3) (``tile=6``: 5.1x fewer multiply-adds than direct) measured slower than F(4x4, 3x3)
on every one of these layers (its 64-point transforms cost more than its GEMM saves), so F(4x4) is the default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WinogradConv2d", "transform_kernel", "winograd_conv2d", "worthwhile", "TILE", "MIN_IN", "MIN_OUT"]

TILE = 4  # default output tile side: F(4x4, 3x3); the input tile is TILE + 2
# Lavin & Gray Sec. 4.2, F(4, 3) (interpolation points 0, +-1, +-2, inf): B^T [6, 6], G [6, 3], A^T [4, 6]
_F43 = (((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
         (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)))
# F(6, 3) (points 0, +-1, +-2, +-1/2, inf; the matrices of NNPACK / wincnn): B^T [8, 8], G [8, 3], A^T [6, 8]
_F63 = (((1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0), (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
         (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0), (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
         (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0), (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
         (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0), (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1)),
        ((1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9), (1 / 90, 1 / 45, 2 / 45),
         (1 / 90, -1 / 45, 2 / 45), (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0), (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
         (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0), (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
         (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1)))
MATRICES = {4: _F43, 6: _F63}  # output tile side -> (B^T, G, A^T)
# smallest convs worth it (input, output channels): measured above, narrower ones are faster direct
MIN_IN, MIN_OUT = 64, 128
# intermediate Winograd-domain tensors are processed in row bands of tiles of about this many bytes, so that the
# transforms and the GEMM work on cache-sized pieces instead of streaming whole [36, K, tiles] tensors (measured 0.5 -
# 256 MB on the layers above: 1-4 MB fastest, 2x faster than one band on the 256 px layers)
CHUNK_BYTES = 2 * 2**20


def _matrices(tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if tile not in MATRICES:
        raise ValueError(f"Winograd tiles of {sorted(MATRICES)} are implemented, got {tile}")
    return tuple(torch.tensor(m, dtype=torch.float64) for m in MATRICES[tile])


def transform_kernel(weight: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """3x3 kernels [K, C, 3, 3] -> their Winograd form U = G g G^T for F(tile x tile, 3x3), as [(tile + 2)^2, K, C]
    float32 (computed in float64)."""
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"Winograd F(m x m, 3x3) takes [K, C, 3, 3] kernels, got {tuple(weight.shape)}")
    _, g, _ = _matrices(tile)
    u = torch.einsum("ij,kcjl,ml->imkc", g, weight.detach().double().cpu(), g)  # [a, a, K, C]
    return u.reshape((tile + 2) ** 2, weight.shape[0], weight.shape[1]).float().contiguous().to(weight.device)


def _plain_3x3(conv: nn.Module) -> bool:
    """A 3x3, stride-1, undilated, ungrouped, zero-padded Conv2d with equal padding on both axes."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1])


def worthwhile(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain 3x3, stride-1 Conv2d that the Winograd form computes faster (wide enough)."""
    return _plain_3x3(conv) and conv.in_channels >= MIN_IN and conv.out_channels >= MIN_OUT


def winograd_conv2d(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 1,
                    chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=padding)`` for a 3x3, stride-1 kernel ``w`` given as ``u =
    transform_kernel(w, tile)`` [(tile + 2)^2, K, C] (the tile is read from its shape). x [N, C, H, W] float32
    -> [N, K, H + 2p - 2, W + 2p - 2]."""
    n, c, h, w = x.shape
    a2, k = u.shape[0], u.shape[1]
    tile = {(m + 2) ** 2: m for m in MATRICES}.get(a2)
    if tile is None or u.shape != (a2, k, c):
        raise ValueError(f"kernel {tuple(u.shape)} does not fit an input with {c} channels (expected "
                         f"[(tile + 2)^2, K, {c}] for a tile in {sorted(MATRICES)})")
    a = tile + 2
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} is too small for a 3x3 kernel")
    th, tw = -(-ho // tile), -(-wo // tile)  # tiles per column / row
    xp = F.pad(x, (padding, padding + tile * tw - wo, padding, padding + tile * th - ho))  # [N, C, m th+2, m tw+2]
    bt, _, at = _matrices(tile)
    kb = torch.kron(bt, bt).to(x)  # [a^2, a^2]: vec(B^T d B) = (B^T (x) B^T) vec(d)
    ka = torch.kron(at, at).to(x)  # [m^2, a^2]
    out = x.new_empty(n, k, tile * th, tile * tw)
    band = max(1, chunk_bytes // (a2 * max(c, k) * n * tw * x.element_size()))  # tile rows per chunk
    for r0 in range(0, th, band):
        r1 = min(th, r0 + band)
        rows, tiles = r1 - r0, n * (r1 - r0) * tw
        d = xp[:, :, tile * r0: tile * r1 + 2].unfold(2, a, tile).unfold(3, a, tile)  # [N, C, r, tw, a, a]
        d = d.permute(4, 5, 1, 0, 2, 3).reshape(a2, c * tiles)
        v = (kb @ d).view(a2, c, tiles)  # B^T d B for every (channel, tile)
        m = torch.bmm(u, v)  # [a^2, K, tiles]: the channel contraction, one GEMM per Winograd coordinate
        y = (ka @ m.view(a2, k * tiles)).view(tile, tile, k, n, rows, tw)  # A^T m A
        out[:, :, tile * r0: tile * r1].view(n, k, rows, tile, tw, tile).copy_(y.permute(3, 2, 4, 0, 5, 1))
    if tile * th != ho or tile * tw != wo:
        out = out[:, :, :ho, :wo].contiguous()
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, zero-padded Conv2d computed with :func:`winograd_conv2d` (its kernel transformed once).

    [N, C, H, W] float32 -> [N, K, H + 2p - 2, W + 2p - 2]; other dtypes (and autograd) take the direct conv.
    """

    def __init__(self, conv: nn.Conv2d, tile: int = TILE):
        super().__init__()
        if not _plain_3x3(conv):
            raise ValueError(f"Winograd F(4x4, 3x3) replaces 3x3, stride-1, undilated, ungrouped, zero-padded "
                             f"Conv2d layers with equal padding on both axes; got {conv}")
        self.padding = conv.padding[0]
        self.register_buffer("weight", conv.weight.detach().clone())  # for the direct fallback
        self.register_buffer("u", transform_kernel(conv.weight, tile))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or self.u.dtype != torch.float32 or torch.is_grad_enabled() and x.requires_grad:
            return F.conv2d(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                            padding=self.padding)
        return winograd_conv2d(x, self.u, self.bias, self.padding)

    def extra_repr(self) -> str:
        m = round(self.u.shape[0] ** 0.5) - 2
        return f"{self.u.shape[2]}, {self.u.shape[1]}, kernel_size=3, padding={self.padding}, F({m}x{m}, 3x3)"
