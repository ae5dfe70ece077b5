"""Dense motion network of face-vid2vid: sparse keypoint motion -> dense 3-D warp field and occlusion map.

For each keypoint k the "sparse motion" maps a driving-frame point p to the source point
p - x_d,k + x_s,k (plus one identity motion for the background). The source feature volume is warped
by each of these K+1 motions; a 3-D hourglass looks at the warped volumes together with the keypoint
heatmap differences and predicts soft masks that blend the K+1 motions into one dense warp, and (from
the same features) a 2-D occlusion map.

Official: ``DenseMotionNetwork`` in ``src/facerender/modules/dense_motion.py``;
``facerender.yaml`` dense_motion_params (block_expansion 32, max_features 1024, num_blocks 5, compress 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass3d, keypoints_to_gaussian, make_coordinate_grid, shallow_conv3d

__all__ = ["DenseMotionConfig", "DenseMotionNetwork", "KP_VARIANCE", "MASK_FLOOR"]

# Variance of the keypoint Gaussians in normalised coordinates (dense_motion.py, kp_variance=0.01).
KP_VARIANCE = 0.01
# Blend weights below this are set to 0 before the motions are blended (dense_motion.py, torch.where(mask < 1e-3)).
# The returned ``mask`` is the softmax before this cut, as in the official output dict.
MASK_FLOOR = 1e-3


@dataclass(frozen=True)
class DenseMotionConfig:
    """``facerender.yaml`` generator_params.dense_motion_params (official values as defaults)."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    compress: int = 4

    @classmethod
    def tiny(cls) -> "DenseMotionConfig":
        return cls(block_expansion=8, max_features=32, num_blocks=2, compress=2)


class DenseMotionNetwork(nn.Module):
    """feature [B, C, D, H, W], kp_source / kp_driving [B, K, 3] -> dict with

    * ``deformation`` [B, D, H, W, 3]: for each driving voxel, where to sample the source volume (grid_sample coords)
    * ``mask`` [B, K+1, D, H, W]: softmax blend weights of the background + K keypoint motions
    * ``occlusion_map`` [B, 1, H, W] in (0, 1) (only when built with ``estimate_occlusion_map``)
    """

    def __init__(self, config: DenseMotionConfig = DenseMotionConfig(), *, num_kp: int = 15,
                 feature_channel: int = 32, reshape_depth: int = 16, estimate_occlusion_map: bool = True):
        super().__init__()
        c = config
        self.num_kp = num_kp
        # per motion: 1 heatmap channel + the compressed feature channels
        self.hourglass = Hourglass3d(in_channels=(num_kp + 1) * (c.compress + 1), block_expansion=c.block_expansion,
                                     max_features=c.max_features, num_blocks=c.num_blocks)
        self.mask = nn.Conv3d(self.hourglass.out_channels, num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channel, c.compress, 1)
        self.norm = nn.BatchNorm3d(c.compress)
        self.occlusion = (nn.Conv2d(self.hourglass.out_channels * reshape_depth, 1, 7, padding=3)
                          if estimate_occlusion_map else None)

    def sparse_motions(self, spatial: tuple[int, int, int], kp_source: torch.Tensor,
                       kp_driving: torch.Tensor) -> torch.Tensor:
        """[B, K+1, D, H, W, 3]: identity (background), then p - kp_driving[k] + kp_source[k] for each k."""
        b, k = kp_source.shape[:2]
        identity = make_coordinate_grid(spatial, kp_source.dtype, kp_source.device)[None, None]  # [1, 1, D, H, W, 3]
        to_source = identity - kp_driving.view(b, k, 1, 1, 1, 3) + kp_source.view(b, k, 1, 1, 1, 3)
        return torch.cat([identity.expand(b, 1, *spatial, 3), to_source], dim=1)

    def deformed_features(self, feature: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
        """feature [B, C, D, H, W] warped by each motion: [B, K+1, C, D, H, W]."""
        b, c, d, h, w = feature.shape
        m = motions.shape[1]
        repeated = feature.unsqueeze(1).expand(b, m, c, d, h, w).reshape(b * m, c, d, h, w)
        warped = F.grid_sample(repeated, motions.reshape(b * m, d, h, w, 3), mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        return warped.view(b, m, c, d, h, w)

    def heatmap_differences(self, spatial: tuple[int, int, int], kp_source: torch.Tensor,
                            kp_driving: torch.Tensor) -> torch.Tensor:
        """Gaussian(kp_driving) - Gaussian(kp_source), zero for the background: [B, K+1, 1, D, H, W]."""
        heat = (keypoints_to_gaussian(kp_driving, spatial, KP_VARIANCE)
                - keypoints_to_gaussian(kp_source, spatial, KP_VARIANCE))  # [B, K, D, H, W]
        zeros = heat.new_zeros(heat.shape[0], 1, *spatial)
        return torch.cat([zeros, heat], dim=1).unsqueeze(2)

    def forward(self, feature: torch.Tensor, kp_source: torch.Tensor,
                kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, d, h, w = feature.shape
        feature = F.relu(self.norm(self.compress(feature)))  # [B, compress, D, H, W]
        motions = self.sparse_motions((d, h, w), kp_source, kp_driving)  # [B, K+1, D, H, W, 3]
        deformed = self.deformed_features(feature, motions)  # [B, K+1, compress, D, H, W]
        heat = self.heatmap_differences((d, h, w), kp_source, kp_driving)  # [B, K+1, 1, D, H, W]
        x = torch.cat([heat, deformed], dim=2).view(b, -1, d, h, w)  # [B, (K+1)(compress+1), D, H, W]
        prediction = self.hourglass(x)  # [B, Ch, D, H, W]

        mask = F.softmax(shallow_conv3d(self.mask, prediction), dim=1)  # [B, K+1, D, H, W]
        weights = torch.where(mask < MASK_FLOOR, torch.zeros_like(mask), mask).unsqueeze(2)  # [B, K+1, 1, D, H, W]
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * weights).sum(dim=1)  # [B, 3, D, H, W]
        out = {"mask": mask, "deformation": deformation.permute(0, 2, 3, 4, 1)}  # deformation [B, D, H, W, 3]
        if self.occlusion is not None:
            flat = prediction.reshape(b, -1, h, w)  # depth folded into channels, [B, Ch*D, H, W]
            out["occlusion_map"] = torch.sigmoid(self.occlusion(flat))
        return out
