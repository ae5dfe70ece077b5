"""The FaceRender training losses: face-vid2vid's self-supervised terms and SadTalker's Eq. 14, one function each.

Stage 1, face-vid2vid (Wang et al. 2021, as in SadTalker Sec. 3.3 "as in the original paper"); the weights are
``config/vox-256.yaml`` of the public face-vid2vid reimplementation that SadTalker builds on:

    perceptual   pyramid loss on the generated vs the real driving frame, scales 1, 1/2, 1/4, 1/8, weight 10
                 per scale. Officially VGG-19 features (5 layers x 10) of each pyramid level; here the pixels of
                 each level (L1), so no pretrained network is needed ("VGG-free" stand-in, named so in the logs)
    equivariance |x_d - T(x_T)|: keypoints of the driving frame vs those of a randomly warped copy (affine +
                 thin-plate spline) mapped back through the warp, x and y only; weight 10
    keypoint     prior: sum over keypoint pairs of max(0, D_t - |x_i - x_j|^2) (D_t = 0.1) plus
                 |mean depth - Z_t| (Z_t = 0.33); weight 10
    headpose     |yaw - yaw*| + |pitch - pitch*| + |roll - roll*| in degrees; weight 20. Officially the targets
                 come from a pretrained HopeNet; here from the corpus' own pose coefficients
                 (:func:`coeff_pose_degrees`), the stand-in for it
    expression   L1 norm of the expression deltas; weight 5
    (The adversarial and feature-matching terms of face-vid2vid are not used here.)

Stage 2, MappingNet (paper supp. Eq. 14): L_1 = 1/N sum_n ||K'_n - K_n||_1 between the keypoints driven by the
MappingNet and by face-vid2vid's own motion estimator (HEEstimator) on the real frame, weight 20, plus the
image terms above on the generated frame.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..coeffs import ANGLE, MOTION_DIM
from ..models.facevid2vid.blocks import AntiAliasDownsample2d, make_coordinate_grid

__all__ = [
    "PYRAMID_SCALES",
    "KEYPOINT_DISTANCE_TARGET",
    "KEYPOINT_DEPTH_TARGET",
    "FV2V_POSE_SIGNS",
    "ImagePyramid",
    "pyramid_l1",
    "RandomWarp",
    "equivariance_loss",
    "keypoint_prior_loss",
    "coeff_pose_degrees",
    "headpose_loss",
    "expression_prior_loss",
    "keypoint_l1",
    "weighted_sum",
]

# face-vid2vid config/vox-256.yaml train_params.scales: the pyramid of the perceptual loss.
PYRAMID_SCALES: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
# face-vid2vid modules/model.py keypoint prior: "set Dt = 0.1", "set Zt = 0.33".
KEYPOINT_DISTANCE_TARGET = 0.1
KEYPOINT_DEPTH_TARGET = 0.33
# How the corpus' 3DMM angles (radians, Deep3DFaceRecon order pitch, yaw, roll: rotations about x, y, z of a
# y-up model) turn into face-vid2vid degrees (motion.get_rotation_matrix, image axes x right, y down).
# Measured on the default corpus renderer: +3DMM pitch moves the nose tip down in the image, +yaw moves it right,
# +roll turns the eye line counter-clockwise. face-vid2vid's +roll turns points clockwise (y is down), so roll
# flips sign; +pitch moves a keypoint with depth z < 0 (the nose side) down and +yaw moves it left, so with
# pitch kept, yaw flips sign. Order here: (pitch, yaw, roll).
FV2V_POSE_SIGNS: tuple[float, float, float] = (1.0, -1.0, -1.0)


# ---------------------------------------------------------------------------------------------
# Perceptual (pyramid) loss
# ---------------------------------------------------------------------------------------------
class ImagePyramid(nn.Module):
    """Image [B, C, H, W] -> list of anti-aliased downsamples, one per scale (scale 1 = the image itself)."""

    def __init__(self, scales: Sequence[float] = PYRAMID_SCALES, channels: int = 3):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.downs = nn.ModuleList(AntiAliasDownsample2d(channels, s) for s in self.scales)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [down(image) for down in self.downs]


def pyramid_l1(pred: torch.Tensor, target: torch.Tensor, pyramid: ImagePyramid,
               weights: Sequence[float]) -> torch.Tensor:
    """sum_s w_s mean |P_s(pred) - P_s(target)|; pred / target [B, 3, H, W] in [0, 1]; the target is detached."""
    if len(weights) != len(pyramid.scales):
        raise ValueError(f"{len(weights)} pyramid weights for {len(pyramid.scales)} scales {pyramid.scales}")
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    total = pred.new_zeros(())
    for w, p, t in zip(weights, pyramid(pred), pyramid(target.detach())):
        if w:
            total = total + w * (p - t).abs().mean()
    return total


# ---------------------------------------------------------------------------------------------
# Equivariance
# ---------------------------------------------------------------------------------------------
class RandomWarp:
    """A random smooth warp of the image plane (face-vid2vid ``Transform``): affine + thin-plate spline.

    theta = [I | 0] + N(0, sigma_affine) [B, 2, 3]; TPS control points on a points_tps x points_tps grid in
    [-1, 1]^2 with weights N(0, sigma_tps). ``warp_coordinates`` maps (x, y) [B, N, 2] through it; the TPS term
    r^2 log r uses the L1 distance r and is added to both x and y (as in face-vid2vid). All draws come from
    ``generator`` (reproducible per training step).
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
                 generator: torch.Generator | None = None):
        self.batch = batch
        self.theta = torch.eye(2, 3).expand(batch, 2, 3) + sigma_affine * torch.randn(batch, 2, 3, generator=generator)
        self.control_points = make_coordinate_grid((1, points_tps, points_tps))[0, ..., :2].reshape(1, -1, 2)
        self.control_params = sigma_tps * torch.randn(batch, 1, points_tps**2, generator=generator)

    def select(self, rows: slice) -> "RandomWarp":
        """The warps of some batch rows (a process's share of a warp drawn for the whole global batch)."""
        out = object.__new__(RandomWarp)
        out.theta, out.control_params = self.theta[rows], self.control_params[rows]
        out.control_points, out.batch = self.control_points, out.theta.shape[0]
        return out

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """(x, y) [B, N, 2] -> warped [B, N, 2]."""
        theta = self.theta.to(coords)
        out = torch.einsum("bij,bnj->bni", theta[:, :, :2], coords) + theta[:, None, :, 2]
        cp, params = self.control_points.to(coords), self.control_params.to(coords)
        r = (coords[:, :, None, :] - cp[:, None, :, :]).abs().sum(-1)  # [B, N, P] (L1 distance)
        tps = (r**2 * torch.log(r + 1e-6) * params).sum(-1, keepdim=True)  # [B, N, 1]
        return out + tps

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """frame [B, C, H, W] -> warped frame: out(p) = frame(warp(p)), reflection padding.

        The grid is the align-corners grid of ``make_coordinate_grid`` (the keypoints' convention), so a warp
        with zero noise returns the frame unchanged.
        """
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((1, h, w), frame.dtype, frame.device)[0, ..., :2].reshape(1, h * w, 2)
        grid = self.warp_coordinates(grid.expand(b, -1, -1)).view(b, h, w, 2)
        return F.grid_sample(frame, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def equivariance_loss(kp_driving: torch.Tensor, kp_transformed: torch.Tensor, warp: RandomWarp) -> torch.Tensor:
    """mean |x_d - warp(x_T)| over x, y: kp_driving from the frame, kp_transformed from ``warp.transform_frame(frame)``
    (both [B, K, 3])."""
    return (kp_driving[..., :2] - warp.warp_coordinates(kp_transformed[..., :2])).abs().mean()


# ---------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------
def keypoint_prior_loss(kp: torch.Tensor, distance_target: float = KEYPOINT_DISTANCE_TARGET,
                        depth_target: float = KEYPOINT_DEPTH_TARGET) -> torch.Tensor:
    """kp [B, K, 3] -> sum_{i, j} mean_b max(0, D_t - |x_i - x_j|^2) + mean_b |mean_k z_k - Z_t|.

    The pairs include i = j (each adds the constant D_t, no gradient), as face-vid2vid's double loop does.
    """
    d2 = (kp[:, :, None, :] - kp[:, None, :, :]).pow(2).sum(-1)  # [B, K, K]
    spread = F.relu(distance_target - d2).mean(0).sum()
    depth = (kp[..., 2].mean(-1) - depth_target).abs().mean()
    return spread + depth


def coeff_pose_degrees(coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients [B, >= 70] (exp 64 | pitch, yaw, roll in radians | trans) -> face-vid2vid (yaw, pitch, roll)
    in degrees [B] each (signs: :data:`FV2V_POSE_SIGNS`). The head-pose targets that stand in for HopeNet."""
    if coeffs.ndim != 2 or coeffs.shape[1] < MOTION_DIM:
        raise ValueError(f"expected coefficients [B, 70] (exp 64 | angle 3 | trans 3), got {tuple(coeffs.shape)}")
    deg = coeffs[:, ANGLE] * (180.0 / math.pi)
    pitch, yaw, roll = (deg[:, i] * FV2V_POSE_SIGNS[i] for i in range(3))
    return yaw, pitch, roll


def headpose_loss(pred_degrees: Sequence[torch.Tensor], target_degrees: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over (yaw, pitch, roll) of mean_b |pred - target| (degrees; [B] each)."""
    return sum((p - t).abs().mean() for p, t in zip(pred_degrees, target_degrees))


def expression_prior_loss(exp: torch.Tensor) -> torch.Tensor:
    """mean_b ||delta||_1: expression deltas [B, 3K] kept small (face-vid2vid "expression" term)."""
    return exp.abs().sum(-1).mean()


# ---------------------------------------------------------------------------------------------
# MappingNet (paper Eq. 14)
# ---------------------------------------------------------------------------------------------
def keypoint_l1(kp_pred: torch.Tensor, kp_target: torch.Tensor) -> torch.Tensor:
    """Eq. 14: L_1 = 1/N sum_n ||K'_n - K_n||_1 for keypoints [B, N, 3] (averaged over the batch too)."""
    if kp_pred.shape != kp_target.shape or kp_pred.ndim != 3:
        raise ValueError(f"keypoints must both be [B, N, 3], got {tuple(kp_pred.shape)} and {tuple(kp_target.shape)}")
    return (kp_pred - kp_target).abs().sum(-1).mean()


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k] over the terms with a non-zero weight."""
    out = None
    for k, v in terms.items():
        w = weights.get(k, 0.0)
        if w:
            out = w * v if out is None else out + w * v
    if out is None:
        raise ValueError("every loss weight is zero: nothing to train")
    return out
