"""Occlusion-aware SPADE generator of face-vid2vid: source image + (source, driving) keypoints -> frame.

source [B, 3, H, W] -> 2-D encoder -> 3-D appearance volume f_s [B, 32, 16, H/4, W/4]   (``encode_source``)
f_s + keypoints -> DenseMotionNetwork -> warp f_s -> fold depth -> x occlusion map -> SPADE decoder
-> frame [B, 3, H, W] in (0, 1)                                                         (``render``)

The source-only part is a separate method so that a video loop encodes the source once
(``sadtalker_lib.steps.render``); ``forward`` runs both, like the official module.

Official: ``OcclusionAwareSPADEGenerator`` and ``SPADEDecoder`` in ``src/facerender/modules/generator.py``;
``facerender.yaml`` generator_params. The official SPADEDecoder hard-codes its widths (256 in, 64 out,
128 SPADE hidden, 6 middle blocks); here they are config fields with those defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d, SPADEResnetBlock
from .dense_motion import DenseMotionConfig, DenseMotionNetwork

__all__ = ["GeneratorConfig", "SPADEDecoder", "OcclusionAwareSPADEGenerator"]


@dataclass(frozen=True)
class GeneratorConfig:
    """``facerender.yaml`` common_params + generator_params, plus the SPADEDecoder widths."""

    num_kp: int = 15
    image_channel: int = 3
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2  # the SPADE decoder upsamples twice, so this must stay 2 (output size = input size)
    reshape_channel: int = 32  # channels of the 3-D volume (common_params.feature_channel)
    reshape_depth: int = 16  # depth of the 3-D volume; reshape_channel x reshape_depth = max_features
    num_resblocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    decoder_out_channels: int = 64  # SPADEDecoder "oc"
    spade_hidden: int = 128  # SPADE nhidden
    num_middle_blocks: int = 6  # SPADEDecoder G_middle_0..5

    @classmethod
    def tiny(cls) -> "GeneratorConfig":
        """A few-channel preset for CPU tests and toy training (input sides divisible by 16)."""
        return cls(block_expansion=8, max_features=32, reshape_channel=8, reshape_depth=4, num_resblocks=1,
                   dense_motion=DenseMotionConfig.tiny(), decoder_out_channels=8, spade_hidden=16,
                   num_middle_blocks=1)

    def __post_init__(self):
        if self.num_down_blocks != 2:
            raise ValueError("num_down_blocks must be 2: the SPADE decoder has exactly two x2 upsampling blocks")
        if self.reshape_channel * self.reshape_depth != self.max_features:
            raise ValueError(
                f"reshape_channel x reshape_depth ({self.reshape_channel} x {self.reshape_depth}) must equal "
                f"max_features ({self.max_features}): the 2-D feature map is reshaped into the 3-D volume"
            )

    @property
    def decoder_in_channels(self) -> int:
        """Width of the warped 2-D feature that feeds the decoder (256 officially)."""
        return self.block_expansion * 2**self.num_down_blocks


class SPADEDecoder(nn.Module):
    """feature [B, C, h, w] -> image [B, 3, 4h, 4w] in (0, 1); the feature is also the SPADE segmentation map.

    conv3x3 to 2C -> num_middle SPADEResnetBlocks(2C) -> x2 -> block(2C -> C) -> x2 -> block(C -> out)
    -> LeakyReLU 0.2 -> conv3x3 to image_channels -> sigmoid.
    """

    def __init__(self, *, in_channels: int = 256, out_channels: int = 64, hidden: int = 128, num_middle: int = 6,
                 image_channels: int = 3):
        super().__init__()
        ic, oc = in_channels, out_channels
        self.fc = nn.Conv2d(ic, 2 * ic, 3, padding=1)
        self.num_middle = num_middle
        for i in range(num_middle):  # official names G_middle_0 .. G_middle_5
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * ic, 2 * ic, ic, hidden))
        self.up_0 = SPADEResnetBlock(2 * ic, ic, ic, hidden)
        self.up_1 = SPADEResnetBlock(ic, oc, ic, hidden)
        self.conv_img = nn.Conv2d(oc, image_channels, 3, padding=1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature
        x = self.fc(feature)
        for i in range(self.num_middle):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2, mode="nearest"), seg)  # [B, C, 2h, 2w]
        x = self.up_1(F.interpolate(x, scale_factor=2, mode="nearest"), seg)  # [B, out, 4h, 4w]
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


class OcclusionAwareSPADEGenerator(nn.Module):
    """The face-vid2vid generator. ``forward(source, kp_source=, kp_driving=)`` returns a dict:

    * ``prediction`` [B, 3, H, W] in (0, 1)
    * ``mask`` [B, K+1, D, H/4, W/4], ``deformation`` [B, D, H/4, W/4, 3] (from the dense motion network)
    * ``occlusion_map`` [B, 1, H/4, W/4] (when ``estimate_occlusion_map``)
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        c = self.config = config
        self.dense_motion_network = DenseMotionNetwork(
            c.dense_motion, num_kp=c.num_kp, feature_channel=c.reshape_channel, reshape_depth=c.reshape_depth,
            estimate_occlusion_map=c.estimate_occlusion_map,
        )
        width = lambda i: min(c.max_features, c.block_expansion * 2**i)  # noqa: E731
        self.first = SameBlock2d(c.image_channel, c.block_expansion, 3)
        self.down_blocks = nn.ModuleList(DownBlock2d(width(i), width(i + 1)) for i in range(c.num_down_blocks))
        self.second = nn.Conv2d(width(c.num_down_blocks), c.max_features, 1)
        self.resblocks_3d = nn.Sequential(*(ResBlock3d(c.reshape_channel) for _ in range(c.num_resblocks)))
        self.third = SameBlock2d(c.max_features, c.decoder_in_channels, 3, leaky=True)
        self.fourth = nn.Conv2d(c.decoder_in_channels, c.decoder_in_channels, 1)
        self.decoder = SPADEDecoder(in_channels=c.decoder_in_channels, out_channels=c.decoder_out_channels,
                                    hidden=c.spade_hidden, num_middle=c.num_middle_blocks,
                                    image_channels=c.image_channel)

    def encode_source(self, source: torch.Tensor) -> torch.Tensor:
        """Source image [B, 3, H, W] -> appearance volume f_s [B, reshape_channel, reshape_depth, H/4, W/4]."""
        c = self.config
        if source.ndim != 4 or source.shape[1] != c.image_channel:
            raise ValueError(f"expected a source image batch [B, {c.image_channel}, H, W], got {tuple(source.shape)}")
        if source.shape[2] % 4 or source.shape[3] % 4:
            raise ValueError(f"source image sides must be divisible by 4, got {tuple(source.shape[2:])}")
        x = self.first(source)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)  # [B, max_features, h, w]
        b, _, h, w = x.shape
        return self.resblocks_3d(x.view(b, c.reshape_channel, c.reshape_depth, h, w))

    def render(self, feature_3d: torch.Tensor, *, kp_source: torch.Tensor,
               kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """Warp the source volume from kp_source to kp_driving (both [B, K, 3]) and decode the frame."""
        b, k = feature_3d.shape[0], self.config.num_kp
        for name, kp in (("kp_source", kp_source), ("kp_driving", kp_driving)):
            if tuple(kp.shape) != (b, k, 3):
                raise ValueError(f"{name} must be [B={b}, K={k}, 3], got {tuple(kp.shape)}")
        motion = self.dense_motion_network(feature_3d, kp_source, kp_driving)
        out = {"mask": motion["mask"], "deformation": motion["deformation"]}
        x = self._warp(feature_3d, motion["deformation"])  # [B, C, D, h, w]
        b, c, d, h, w = x.shape
        x = self.fourth(self.third(x.view(b, c * d, h, w)))  # depth folded into channels
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out["occlusion_map"] = occlusion
            if occlusion.shape[2:] != x.shape[2:]:
                occlusion = F.interpolate(occlusion, size=x.shape[2:], mode="bilinear")
            x = x * occlusion
        out["prediction"] = self.decoder(x)
        return out

    @staticmethod
    def _warp(volume: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """grid_sample the volume [B, C, D, h, w] at deformation [B, D', h', w', 3] (resized if needed)."""
        if deformation.shape[1:4] != volume.shape[2:]:
            deformation = F.interpolate(deformation.permute(0, 4, 1, 2, 3), size=volume.shape[2:], mode="trilinear")
            deformation = deformation.permute(0, 2, 3, 4, 1)
        return F.grid_sample(volume, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, source: torch.Tensor, *, kp_source: torch.Tensor,
                kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.render(self.encode_source(source), kp_source=kp_source, kp_driving=kp_driving)
