"""Winograd F(4x4, 3x3) convolution (sadtalker_lib/winograd.py): equals the direct convolution, refuses the convs
it cannot compute, falls back where it must."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sadtalker_lib.winograd import MIN_IN, MIN_OUT, WinogradConv2d, transform_kernel, winograd_conv2d, worthwhile


@pytest.mark.parametrize("n, c, k, h, w, padding, bias", [
    (2, 8, 16, 16, 16, 1, True),  # whole tiles
    (1, 5, 7, 17, 13, 1, True),  # partial tiles on both axes
    (2, 6, 4, 10, 9, 0, False),  # 'valid' conv, no bias
    (1, 3, 2, 3, 3, 0, True),  # one output pixel
    (1, 4, 3, 1, 6, 1, True),  # one row
])
def test_winograd_equals_the_direct_conv(n, c, k, h, w, padding, bias):
    g = torch.Generator().manual_seed(h * w + c)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(k, c, 3, 3, generator=g)
    b = torch.randn(k, generator=g) if bias else None
    ref = F.conv2d(x, weight, b, padding=padding)
    got = winograd_conv2d(x, transform_kernel(weight), b, padding)
    assert got.shape == ref.shape and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    # band by band (one tile row per band) as well
    banded = winograd_conv2d(x, transform_kernel(weight), b, padding, chunk_bytes=1)
    torch.testing.assert_close(banded, ref, rtol=1e-5, atol=1e-4)
    # F(6x6, 3x3): larger tiles, the same convolution
    torch.testing.assert_close(winograd_conv2d(x, transform_kernel(weight, 6), b, padding), ref, rtol=1e-5, atol=2e-4)


def test_winograd_module_replaces_a_conv_and_falls_back_where_it_must():
    torch.manual_seed(0)
    conv = nn.Conv2d(MIN_IN, MIN_OUT, 3, padding=1)
    wino = WinogradConv2d(conv)
    x = torch.randn(1, MIN_IN, 9, 11)
    with torch.no_grad():
        ref = conv(x)
        torch.testing.assert_close(wino(x), ref, rtol=1e-5, atol=1e-4)
    # autograd and other dtypes take the direct conv (same result, gradients flow)
    xg = x.clone().requires_grad_()
    out = wino(xg)
    out.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        low = wino(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16


def test_worthwhile_and_refusals():
    assert worthwhile(nn.Conv2d(MIN_IN, MIN_OUT, 3, padding=1))
    assert not worthwhile(nn.Conv2d(MIN_IN, MIN_OUT // 2, 3, padding=1))  # too narrow: the direct conv is faster
    assert not worthwhile(nn.Conv2d(MIN_IN, MIN_OUT, 3, padding=1, stride=2))
    assert not worthwhile(nn.Conv2d(MIN_IN, MIN_OUT, 5, padding=2))
    assert not worthwhile(nn.Conv3d(MIN_IN, MIN_OUT, 3, padding=1))
    for bad in (nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 5), nn.Conv2d(4, 4, 3, groups=2),
                nn.Conv2d(4, 4, 3, dilation=2), nn.Conv2d(4, 4, 3, padding=(1, 0)),
                nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="Winograd F"):
            WinogradConv2d(bad)
    with pytest.raises(ValueError, match=r"\[K, C, 3, 3\] kernels"):
        transform_kernel(torch.zeros(4, 4, 5, 5))
    u = transform_kernel(torch.zeros(4, 3, 3, 3))
    with pytest.raises(ValueError, match="does not fit an input with 5 channels"):
        winograd_conv2d(torch.zeros(1, 5, 8, 8), u)
    with pytest.raises(ValueError, match="tiles of"):
        transform_kernel(torch.zeros(4, 3, 3, 3), tile=5)
    with pytest.raises(ValueError, match="too small"):
        winograd_conv2d(torch.zeros(1, 3, 2, 2), u, padding=0)
