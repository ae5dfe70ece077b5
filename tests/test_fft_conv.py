"""Large-kernel convolutions by FFT (sadtalker_lib/fft_conv.py): equal the direct convolution, refuse the convs they
cannot compute, fall back where they must."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sadtalker_lib.fft_conv import FFTConv, fft_worthwhile, kernel_spectrum


@pytest.mark.parametrize("conv, shape", [
    (nn.Conv3d(12, 5, 7, padding=3), (2, 12, 5, 19, 23)),  # partial tiles, 3-D, the dense-motion mask conv's form
    (nn.Conv3d(4, 3, (3, 7, 7), padding=(1, 3, 3)), (1, 4, 6, 16, 16)),  # whole tiles, a shorter depth kernel
    (nn.Conv2d(30, 1, 7, padding=3), (2, 30, 40, 33)),  # 2-D, the occlusion conv's form
    (nn.Conv2d(3, 2, 9, padding=4, bias=False), (1, 3, 5, 7)),  # image smaller than one tile, no bias
])
def test_fft_conv_equals_the_direct_conv(conv, shape):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape)
    fft = FFTConv(conv)
    with torch.no_grad():
        ref, got = conv(x), fft(x)
    assert got.shape == ref.shape and got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for tile in (4, 32):  # any tile size gives the same result
        with torch.no_grad():
            torch.testing.assert_close(FFTConv(conv, tile=tile)(x), ref, rtol=1e-5, atol=1e-5)


def test_fft_conv_falls_back_under_autograd():
    torch.manual_seed(0)
    conv = nn.Conv3d(3, 2, 7, padding=3)
    x = torch.randn(1, 3, 4, 9, 9, requires_grad=True)
    out = FFTConv(conv)(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), conv(x).detach())


def test_fft_worthwhile_and_refusals():
    assert fft_worthwhile(nn.Conv3d(8, 16, 7, padding=3)) and fft_worthwhile(nn.Conv2d(8, 8, 7, padding=3))
    assert not fft_worthwhile(nn.Conv2d(1792, 1, 7, padding=3))  # one output: the direct conv is faster
    assert not fft_worthwhile(nn.Conv2d(8, 8, 3, padding=1))  # small kernels: direct or Winograd
    for bad in (nn.Conv3d(4, 4, 7, padding=2), nn.Conv3d(4, 4, 7, padding=3, stride=2),
                nn.Conv2d(4, 4, 7, padding=3, groups=2), nn.Conv2d(4, 4, 6, padding=3),
                nn.Conv2d(4, 4, (7, 5), padding=(3, 2)), nn.Conv2d(4, 4, 7, padding=3, padding_mode="reflect")):
        assert not fft_worthwhile(bad)
        with pytest.raises(ValueError, match="the FFT conv replaces"):
            FFTConv(bad)
    with pytest.raises(ValueError, match=r"\[K, C, kd, k, k\] kernels"):
        kernel_spectrum(torch.zeros(2, 2, 7, 7))
