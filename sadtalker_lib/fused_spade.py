"""The face-vid2vid SPADE decoder rewritten for speed (the ``fuse-spade`` technique of ``sadtalker_lib.precision``).

Same arithmetic as ``models/facevid2vid/generator.SPADEDecoder`` up to the order of float sums (measured on the
parity weights in float32: max difference ~2e-6 of the [0, 1] frame), with less work:

* Every SPADE of the decoder starts with ``ReLU(conv3x3(nearest_upsample(seg, s)))``, seg being the decoder input
  [B, 256, h, w] and s = 1 (middle blocks), 2 (``up_0``), 4 (``up_1``). A 3x3 conv of an s-times nearest-upsampled
  map is computed at the map's own resolution: along each axis an output phase a (0..s-1) reads input offsets
  floor((a + k) / s) for the taps k = -1, 0, 1, so phases fall into at most 3 classes (first, inner, last), and
  each class pair is one small conv (1x1 .. 2x2 kernels) whose weights are sums of the 3x3 taps. At s = 4 that
  is 25 kernel taps at h x w instead of 144 (9 taps x 16 phases); the 256-channel seg is never upsampled.
* The SPADEs of one resolution share seg: their first convs run as one conv (all 12 of the middle blocks, the 3 of
  each up block).
* ``mlp_gamma`` and ``mlp_beta`` (same input) run as one conv, the ``1 +`` of ``(1 + gamma)`` folded into its bias;
  the instance norm of a block input, shared by ``norm_0`` and ``norm_s``, is computed once; the modulation
  ``norm * (1 + gamma) + beta`` is one ``addcmul`` that writes the next conv's input dtype (bfloat16 under
  ``bf16-conv``: one pass instead of modulate + convert).

Built from a loaded decoder whose spectral norms are folded (``precision._fold_spectral_norm``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UpsampledSharedConv", "FusedSPADEBlock", "FusedSPADEDecoder", "phase_classes"]


def phase_classes(scale: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Nearest upsampling by ``scale`` then a 3x3 conv, along one axis: (the distinct input-offset triples read by
    taps k = -1, 0, 1, the class index of each output phase 0..scale-1)."""
    maps = [tuple((a + k) // scale for k in (-1, 0, 1)) for a in range(scale)]
    classes = list(dict.fromkeys(maps))
    return classes, [classes.index(m) for m in maps]


class UpsampledSharedConv(nn.Module):
    """``[ReLU(conv_i(nearest_upsample(seg, scale))) for conv_i in convs]``, computed at seg's resolution.

    convs: 3x3, zero-padded by 1, same input and output widths. seg [B, Cin, h, w] -> list of [B, C, s*h, s*w].
    """

    def __init__(self, convs: list[nn.Conv2d], scale: int):
        super().__init__()
        if len({c.out_channels for c in convs}) != 1 or any(c.kernel_size != (3, 3) or c.padding != (1, 1)
                                                             for c in convs):
            raise ValueError("UpsampledSharedConv takes 3x3 convs with padding 1 and equal output widths")
        w = torch.cat([c.weight.detach() for c in convs])  # [n * C, Cin, 3, 3]
        b = torch.cat([c.bias.detach() for c in convs])
        self.scale, self.parts = scale, len(convs)
        classes, self.phase = phase_classes(scale)
        self.num_classes = len(classes)
        self.convs = nn.ModuleList()
        self.offsets: list[tuple[int, int]] = []
        for cy in classes:
            for cx in classes:
                y0, x0 = min(cy), min(cx)
                k = w.new_zeros(w.shape[0], w.shape[1], max(cy) - y0 + 1, max(cx) - x0 + 1)
                for ky in range(3):
                    for kx in range(3):
                        k[:, :, cy[ky] - y0, cx[kx] - x0] += w[:, :, ky, kx]
                conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(k.shape[2:])).to(w.device)
                conv.weight.data.copy_(k)
                conv.bias.data.copy_(b)
                self.convs.append(conv)
                self.offsets.append((y0, x0))

    def forward(self, seg: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = seg.shape
        s, n = self.scale, self.num_classes
        padded = F.pad(seg, (1, 1, 1, 1))
        rows = [[a for a in range(s) if self.phase[a] == c] for c in range(n)]  # each class: a run of phases
        out = None
        for i, (conv, (y0, x0)) in enumerate(zip(self.convs, self.offsets)):
            ky, kx = conv.weight.shape[2:]
            y = F.relu(conv(padded[:, :, 1 + y0:h + y0 + ky, 1 + x0:w + x0 + kx]))  # [B, n * C, h, w]
            if out is None:  # [parts, B, C, h, s, w, s]: each part contiguous once viewed as [B, C, s*h, s*w]
                out = y.new_empty(self.parts, b, y.shape[1] // self.parts, h, s, w, s)
            ry, rx = rows[i // n], rows[i % n]
            out[:, :, :, :, ry[0]:ry[-1] + 1, :, rx[0]:rx[-1] + 1] = (
                y.view(b, self.parts, -1, h, 1, w, 1).transpose(0, 1))
        return [o.view(b, -1, h * s, w * s) for o in out]


def _input_dtype(conv: nn.Module) -> torch.dtype:
    """The dtype a conv computes in (a ``LowPrecisionConv`` 's 16-bit float, else its weight's)."""
    return getattr(conv, "dtype", None) or conv.weight.dtype


def _gamma_beta(spade: nn.Module) -> nn.Conv2d:
    """A SPADE's mlp_gamma and mlp_beta as one conv hidden -> [1 + gamma | beta] (2C channels)."""
    g, b = spade.mlp_gamma, spade.mlp_beta
    conv = nn.Conv2d(g.in_channels, 2 * g.out_channels, g.kernel_size, padding=g.padding).to(g.weight.device)
    conv.weight.data.copy_(torch.cat([g.weight.detach(), b.weight.detach()]))
    conv.bias.data.copy_(torch.cat([g.bias.detach() + 1, b.bias.detach()]))
    return conv


class FusedSPADEBlock(nn.Module):
    """A ``SPADEResnetBlock`` (folded convs) that takes its SPADE hidden maps ready: (x [B, Cin, H, W], actv) ->
    [B, Cout, H, W]; actv: the ReLU'd hidden maps [B, hidden, H, W] of norm_0, norm_1 (and norm_s)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.learned_shortcut = block.learned_shortcut
        self.conv_0, self.conv_1 = block.conv_0, block.conv_1
        self.gb_0, self.gb_1 = _gamma_beta(block.norm_0), _gamma_beta(block.norm_1)
        if self.learned_shortcut:
            self.conv_s, self.gb_s = block.conv_s, _gamma_beta(block.norm_s)
        self.num_spades = 3 if self.learned_shortcut else 2

    @staticmethod
    def _modulate(normalized, gb: nn.Module, actv, conv: nn.Module, leaky: bool) -> torch.Tensor:
        """normalized * (1 + gamma) + beta (then LeakyReLU 0.2), written in ``conv`` 's input dtype."""
        c = normalized.shape[1]
        y = gb(actv)
        out = torch.addcmul(y[:, c:], normalized, y[:, :c],
                            out=torch.empty(normalized.shape, dtype=_input_dtype(conv), device=normalized.device))
        return F.leaky_relu_(out, 0.2) if leaky else out

    def forward(self, x: torch.Tensor, actv: list[torch.Tensor]) -> torch.Tensor:
        n = F.instance_norm(x, eps=1e-5)  # shared by norm_0 and norm_s
        skip = self.conv_s(self._modulate(n, self.gb_s, actv[2], self.conv_s, False)) if self.learned_shortcut else x
        dx = self.conv_0(self._modulate(n, self.gb_0, actv[0], self.conv_0, True))
        dx = self.conv_1(self._modulate(F.instance_norm(dx, eps=1e-5), self.gb_1, actv[1], self.conv_1, True))
        return skip + dx


class FusedSPADEDecoder(nn.Module):
    """``SPADEDecoder`` (folded spectral norms) -> the same map feature [B, C, h, w] -> image [B, 3, 4h, 4w]."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.fc, self.conv_img = decoder.fc, decoder.conv_img
        self.mids = nn.ModuleList(getattr(decoder, f"G_middle_{i}") for i in range(decoder.num_middle))
        spades = lambda blk: [blk.norm_0, blk.norm_1] + ([blk.norm_s] if blk.learned_shortcut else [])  # noqa: E731
        self.shared_mid = UpsampledSharedConv([s.mlp_shared[0] for b in self.mids for s in spades(b)], 1)
        self.shared_up_0 = UpsampledSharedConv([s.mlp_shared[0] for s in spades(decoder.up_0)], 2)
        self.shared_up_1 = UpsampledSharedConv([s.mlp_shared[0] for s in spades(decoder.up_1)], 4)
        self.mids = nn.ModuleList(FusedSPADEBlock(b) for b in self.mids)
        self.up_0, self.up_1 = FusedSPADEBlock(decoder.up_0), FusedSPADEBlock(decoder.up_1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        actv, k = self.shared_mid(feature), 0
        for block in self.mids:
            x = block(x, actv[k:k + block.num_spades])
            k += block.num_spades
        x = self.up_0(F.interpolate(x, scale_factor=2, mode="nearest"), self.shared_up_0(feature))
        x = self.up_1(F.interpolate(x, scale_factor=2, mode="nearest"), self.shared_up_1(feature))
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
