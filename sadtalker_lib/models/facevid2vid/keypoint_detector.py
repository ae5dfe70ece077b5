"""Canonical 3-D keypoint detector of face-vid2vid (the "appearance keypoints" x_c in SadTalker Fig. 2).

source image [B, 3, H, W] -> anti-aliased downsample (x scale_factor) -> KPHourglass -> 3-D heatmaps
[B, K, D, h, w] (softmax over all voxels, temperature 0.1) -> expected coordinates [B, K, 3] in [-1, 1].

Official: ``KPDetector`` in ``src/facerender/modules/keypoint_detector.py`` with ``facerender.yaml``
``kp_detector_params``. The Jacobian branch (``estimate_jacobian``) is off in SadTalker and not built here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AntiAliasDownsample2d, KPHourglass, make_coordinate_grid

__all__ = ["KPDetectorConfig", "KPDetector"]


@dataclass(frozen=True)
class KPDetectorConfig:
    """``facerender.yaml`` common_params + kp_detector_params (official values as defaults)."""

    num_kp: int = 15
    image_channel: int = 3
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_channel: int = 16384  # = 1024 (deepest width) x 16 (depth)
    reshape_depth: int = 16
    temperature: float = 0.1
    scale_factor: float = 0.25

    @classmethod
    def tiny(cls) -> "KPDetectorConfig":
        """A few-channel preset for CPU tests and toy training (input sides divisible by 32)."""
        return cls(block_expansion=8, max_features=32, num_blocks=3, reshape_channel=32 * 4, reshape_depth=4)


class KPDetector(nn.Module):
    """Source image [B, 3, H, W] (values in [0, 1]) -> canonical keypoints [B, K, 3] (x, y, z in [-1, 1])."""

    def __init__(self, config: KPDetectorConfig = KPDetectorConfig()):
        super().__init__()
        c = config
        self.config = c
        self.predictor = KPHourglass(
            in_channels=c.image_channel, block_expansion=c.block_expansion, max_features=c.max_features,
            num_blocks=c.num_blocks, reshape_channel=c.reshape_channel, reshape_depth=c.reshape_depth,
        )
        self.kp = nn.Conv3d(self.predictor.out_channels, c.num_kp, 3, padding=1)
        if c.scale_factor != 1:
            self.down = AntiAliasDownsample2d(c.image_channel, c.scale_factor)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> per-keypoint probability volumes [B, K, D, h, w] (each sums to 1)."""
        c = self.config
        if image.ndim != 4 or image.shape[1] != c.image_channel:
            raise ValueError(f"expected an image batch [B, {c.image_channel}, H, W], got {tuple(image.shape)}")
        factor = round(1 / c.scale_factor) * 2**c.num_blocks
        if image.shape[2] % factor or image.shape[3] % factor:
            raise ValueError(f"image sides must be divisible by {factor} for this KPDetector, "
                             f"got {tuple(image.shape[2:])}")
        x = self.down(image) if c.scale_factor != 1 else image
        logits = self.kp(self.predictor(x))  # [B, K, D, h, w]
        b, k = logits.shape[:2]
        probs = F.softmax(logits.view(b, k, -1) / c.temperature, dim=2)
        return probs.view(logits.shape)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        heat = self.heatmaps(image)  # [B, K, D, h, w]
        grid = make_coordinate_grid(heat.shape[2:], heat.dtype, heat.device)  # [D, h, w, 3]
        return (heat.unsqueeze(-1) * grid).sum(dim=(2, 3, 4))  # expected position, [B, K, 3]
