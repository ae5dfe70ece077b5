"""ExpNet (paper Sec. 3.2, Fig. 3, Eq. 2): audio window + reference expression + blink -> expression.

    beta_{1..t} = Phi_M( Phi_A(a_{1..t}), z_blink, beta_0 )                                  (Eq. 2)

Phi_A is the Wav2Lip audio encoder (supp. Fig. B11 c: four stages of residual conv blocks, each
Conv2d + BatchNorm + ReLU), applied to every frame's 0.2 s mel window on its own; Phi_M is a single
linear layer on [audio 512 | beta_0 64 | z_blink 1] (official ``mapping1``, Linear(577 -> 64)).
Frames do not interact, so the official 10-frame chunking (in ``audio2coeff.py``) is only a memory
choice. Official source: ``src/audio2exp_models/networks.py`` (SimpleWrapperV2); state-dict keys match
it by identity (``KEY_MAPS["audio2exp"]`` is empty).

The audio encoder here is also PoseVAE's (``posevae.py`` imports :class:`AudioEncoder`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ConvBlock", "AudioEncoder", "ExpNetConfig", "ExpNet"]


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d (-> + input when ``residual``) -> ReLU.  [N, C_in, H, W] -> [N, C_out, H', W']."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False):
        super().__init__()
        assert not residual or (c_in == c_out and stride == 1), "a residual block keeps the shape"
        self.conv_block = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.BatchNorm2d(c_out))
        self.residual = residual
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class AudioEncoder(nn.Sequential):
    """Wav2Lip audio encoder Phi_A: mel window [N, 1, 80, 16] -> embedding [N, 512, 1, 1].

    Four stages (32, 64, 128, 256 channels; strides 1, (3,1), 3, (3,2)) of a strided block followed by
    residual blocks, then a 3x3 valid conv and a 1x1 conv to 512. Spatial size: 80x16 -> 27x16 -> 9x6 ->
    3x3 -> 1x1. It is an ``nn.Sequential`` so its keys are ``<i>.conv_block.{0,1}.*`` as in the official file.
    """

    # (c_in, c_out, kernel, stride, padding, residual), official SimpleWrapperV2 / AudioEncoder.
    LAYERS = (
        (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
        (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
        (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
        (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),
        (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
    )
    out_channels = 512

    def __init__(self):
        super().__init__(*[ConvBlock(*spec) for spec in self.LAYERS])


@dataclass
class ExpNetConfig:
    """ExpNet sizes (official ``auido2exp.yaml`` / SimpleWrapperV2)."""

    audio_dim: int = 512  # Phi_A output
    exp_dim: int = 64  # beta (3DMM expression coefficients)
    blink_dim: int = 1  # z_blink


class ExpNet(nn.Module):
    """Eq. 2. mel [B, T, 1, 80, 16], beta_0 [B, T, 64], z_blink [B, T, 1] -> beta [B, T, 64]."""

    def __init__(self, config: ExpNetConfig | None = None):
        super().__init__()
        self.config = config = config or ExpNetConfig()
        self.audio_encoder = AudioEncoder()  # Phi_A
        # Phi_M; official name "mapping1". No residual to beta_0 (the official "+ ref" is commented out).
        self.mapping1 = nn.Linear(config.audio_dim + config.exp_dim + config.blink_dim, config.exp_dim)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """Phi_A: mel windows [B, T, 1, 80, 16] -> audio features [B, T, 512]."""
        b, t = mel.shape[:2]
        return self.audio_encoder(mel.reshape(b * t, *mel.shape[2:])).reshape(b, t, -1)

    def map_features(self, audio: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        """Phi_M: audio features [B, T, 512], beta_0 [B, T, 64], z_blink [B, T, 1] -> beta [B, T, 64]."""
        b, t = audio.shape[:2]
        x = torch.cat([audio.reshape(b * t, -1), ref_exp.reshape(b * t, -1), blink.reshape(b * t, -1)], dim=1)
        return self.mapping1(x).reshape(b, t, -1)  # [B*T, 577] -> [B, T, 64]

    def forward(self, mel: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        return self.map_features(self.encode_audio(mel), ref_exp, blink)
