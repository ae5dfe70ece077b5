"""The FaceRender training losses: face-vid2vid's self-supervised terms and SadTalker's Eq. 14, one function each.

Stage 1, face-vid2vid (Wang et al. 2021, as in SadTalker Sec. 3.3 "as in the original paper"); the weights are
``config/vox-256.yaml`` of the public face-vid2vid reimplementation that SadTalker builds on:

    perceptual   pyramid loss on the generated vs the real driving frame, scales 1, 1/2, 1/4, 1/8. Officially
                 VGG-19 features (relu1_1 .. relu5_1, weight 10 each) of each pyramid level: used when
                 torchvision's ImageNet VGG-19 file is on disk (:func:`vgg19_weights_path`; never downloaded).
                 Offline the weight-free stand-in "pixel + SSIM pyramid" (L1 + 1 - SSIM of each level, weight 10
                 per scale; :class:`PerceptualLoss` says which one in ``label``). ``pyramid_l1``: the pixels only
    gan          hinge GAN with face-vid2vid's patch discriminator (:class:`MultiScaleDiscriminator`,
                 vox-256.yaml discriminator_params: scales [1], 32 -> 512 channels, 4 blocks, spectral norm);
                 generator weight 1, discriminator weight 1
    feature      feature matching: L1 between the discriminator's block outputs on the real and the generated
    matching     frame, weight 10 per block
    equivariance |x_d - T(x_T)|: keypoints of the driving frame vs those of a randomly warped copy (affine +
                 thin-plate spline) mapped back through the warp, x and y only; weight 10
    keypoint     prior: sum over keypoint pairs of max(0, D_t - |x_i - x_j|^2) (D_t = 0.1) plus
                 |mean depth - Z_t| (Z_t = 0.33); weight 10
    headpose     |yaw - yaw*| + |pitch - pitch*| + |roll - roll*| in degrees; weight 20. Officially the targets
                 come from a pretrained HopeNet; here from the corpus' own pose coefficients
                 (:func:`coeff_pose_degrees`), the stand-in for it
    expression   deformation prior: L1 norm of the expression deltas; weight 5
    landmark     NOT in face-vid2vid (weight 0 there and in the paper preset): the (x, y) of the source and
    anchor       driving keypoints pulled towards K chosen landmarks of the 68 of each frame
                 (:data:`ANCHOR_LANDMARKS`, :func:`landmark_anchor_loss`). A CPU-budget aid: face-vid2vid finds
                 its keypoints unsupervised over days of GPU training; at minutes of CPU they never follow the
                 face and the renderer learns to copy the source (measured: ``facevid2vid.py``)
    landmark     NOT in face-vid2vid either (off by default, on in the CPU preset): the generator is driven by
    keypoints    keypoints made of those landmarks in training (:func:`landmark_keypoints`;
                 ``teacher_landmarks``) instead of the detected ones, so that it learns to follow precise
                 keypoints (or, ``teacher_motion_only``, by the detected source keypoints moved by the
                 landmarks' motion: :func:`teacher_keypoints`)
    mouth        NOT in face-vid2vid (off by default and in the presets): L1 inside the box around both frames'
    region       lips (:func:`mouth_region_l1`; ``lambda_mouth``)

Stage 2, MappingNet (paper supp. Eq. 14): L_1 = 1/N sum_n ||K'_n - K_n||_1 between the keypoints driven by the
MappingNet and by face-vid2vid's own motion estimator (HEEstimator) on the real frame, weight 20, plus the
image terms above on the generated frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..coeffs import ANGLE, MOTION_DIM
from ..landmarks import MOUTH_LANDMARKS
from ..models.facevid2vid.blocks import AntiAliasDownsample2d, make_coordinate_grid

__all__ = [
    "PYRAMID_SCALES",
    "KEYPOINT_DISTANCE_TARGET",
    "KEYPOINT_DEPTH_TARGET",
    "FV2V_POSE_SIGNS",
    "ImagePyramid",
    "pyramid_l1",
    "ssim",
    "MOUTH_BOX_MARGIN",
    "mouth_box_mask",
    "mouth_region_l1",
    "vgg19_weights_path",
    "PerceptualLoss",
    "DiscriminatorConfig",
    "MultiScaleDiscriminator",
    "generator_gan_loss",
    "discriminator_gan_loss",
    "feature_matching_loss",
    "RandomWarp",
    "equivariance_loss",
    "keypoint_prior_loss",
    "coeff_pose_degrees",
    "headpose_loss",
    "expression_prior_loss",
    "keypoint_l1",
    "weighted_sum",
    "ANCHOR_LANDMARKS",
    "anchor_landmarks",
    "landmark_anchor_loss",
    "landmark_motion_loss",
    "landmark_keypoints",
    "teacher_keypoints",
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


# SSIM constants for images in [0, 1] (Wang et al. 2004: K1 0.01, K2 0.03) and its Gaussian window.
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5  # 7 taps (not 11) so that the 8 px level of a 64 px frame still fits
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1 (what face-vid2vid's Vgg19 loads)
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # face-vid2vid Vgg19: relu1_1 .. relu5_1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images [B, C, H, W] in [0, 1] (Gaussian window, reflect padding): 1 when equal.

    Always computed in float32, also under autocast: the variances E[x^2] - E[x]^2 cancel to below bfloat16's
    resolution (~0.4% of E[x^2], far above ``SSIM_C2``), so in bfloat16 the denominator reaches 0 and the loss
    -inf (every face-vid2vid step under ``mixed_precision="bf16"`` was NaN)."""
    with torch.autocast(a.device.type, enabled=False):
        return _ssim_fp32(a.float(), b.float())


def _ssim_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    taps = min(SSIM_WINDOW, a.shape[-1], a.shape[-2])
    x = torch.arange(taps, dtype=a.dtype, device=a.device) - (taps - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = (g / g.sum())
    c = a.shape[1]
    kx, ky = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        t = F.pad(t, (taps // 2, (taps - 1) // 2, taps // 2, (taps - 1) // 2), mode="reflect")
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    return (num / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))).mean()


def vgg19_weights_path() -> Path | None:
    """torchvision's ImageNet VGG-19 file when it is already on disk (torch hub cache), else None."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return path if path.is_file() else None


class PerceptualLoss(nn.Module):
    """face-vid2vid's multi-scale perceptual loss, or its weight-free stand-in.

    kind "vgg19": sum_s sum_l w_l mean |VGG_l(P_s(pred)) - VGG_l(P_s(target))| (VGG-19 ImageNet weights from
    :func:`vgg19_weights_path`, frozen; layer weights ``layer_weights``); "pixel_ssim" (stand-in): sum_s w_s
    (mean |P_s(pred) - P_s(target)| + 1 - SSIM(P_s(pred), P_s(target))); "pixel" (stand-in): the L1 part only
    (:func:`pyramid_l1`); "auto": vgg19 when its file is on disk, else pixel_ssim. ``label`` names what it is.
    """

    def __init__(self, kind: str = "auto", scales: Sequence[float] = PYRAMID_SCALES,
                 scale_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0),
                 layer_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0, 10.0)):
        super().__init__()
        if kind == "auto":
            kind = "vgg19" if vgg19_weights_path() is not None else "pixel_ssim"
        if kind not in ("vgg19", "pixel_ssim", "pixel"):
            raise ValueError(f"perceptual kind must be auto, vgg19, pixel_ssim or pixel, got {kind!r}")
        if len(scale_weights) != len(tuple(scales)):
            raise ValueError(f"{len(scale_weights)} perceptual weights for scales {tuple(scales)}")
        self.kind, self.pyramid = kind, ImagePyramid(scales)
        self.scale_weights, self.layer_weights = tuple(scale_weights), tuple(layer_weights)
        self.label = {"vgg19": "VGG-19 perceptual", "pixel_ssim": "stand-in: pixel L1 + SSIM pyramid, not VGG-19",
                      "pixel": "stand-in: pixel L1 pyramid, not VGG-19"}[kind]
        if kind == "vgg19":
            self.vgg = self._vgg19()
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _vgg19() -> nn.ModuleList:
        from torchvision.models import vgg19

        path = vgg19_weights_path()
        if path is None:
            raise FileNotFoundError(f"VGG-19 weights not found ({VGG19_FILE} in the torch hub cache); use "
                                    "perceptual='pixel_ssim' (the weight-free stand-in)")
        net = vgg19()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        layers = net.features
        out = nn.ModuleList(nn.Sequential(*layers[a:b]) for a, b in VGG19_SLICES)
        for p in out.parameters():
            p.requires_grad_(False)
        return out.eval()

    def _vgg_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, feats = (x - self.mean) / self.std, []
        for block in self.vgg:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred / target [B, 3, H, W] in [0, 1] -> the weighted sum (target detached)."""
        if self.kind == "pixel":
            return pyramid_l1(pred, target, self.pyramid, self.scale_weights)
        total = pred.new_zeros(())
        for w, p, t in zip(self.scale_weights, self.pyramid(pred), self.pyramid(target.detach())):
            if not w:
                continue
            if self.kind == "vgg19":
                for lw, fp, ft in zip(self.layer_weights, self._vgg_features(p), self._vgg_features(t)):
                    total = total + lw * (fp - ft.detach()).abs().mean()
            else:
                total = total + w * ((p - t).abs().mean() + 1 - ssim(p, t))
        return total


# ---------------------------------------------------------------------------------------------
# GAN and feature matching (face-vid2vid modules/discriminator.py, hinge loss of its model.py)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscriminatorConfig:
    """vox-256.yaml discriminator_params (official values as defaults)."""

    scales: tuple[float, ...] = (1.0,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    spectral_norm: bool = True

    @classmethod
    def tiny(cls, num_blocks: int = 4) -> "DiscriminatorConfig":
        """Few channels for CPU presets (3 blocks for 32 px frames: 4 kernel-4 blocks need >= 64 px)."""
        return cls(block_expansion=8, max_features=64, num_blocks=num_blocks)


class _DownBlock(nn.Module):
    """conv 4x4 (valid; spectral norm) -> instance norm (not in the first block) -> LeakyReLU 0.2 -> avg pool /2
    (not in the last block)."""

    def __init__(self, cin: int, cout: int, *, norm: bool, pool: bool, sn: bool):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size=4)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        x = F.leaky_relu(x, 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


class PatchDiscriminator(nn.Module):
    """image [B, 3, H, W] -> (block outputs [B, C_i, h_i, w_i], patch logits [B, 1, h, w])."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        c = config
        width = lambda i: min(c.max_features, c.block_expansion * 2**i)  # noqa: E731
        self.down_blocks = nn.ModuleList(
            _DownBlock(3 if i == 0 else width(i), width(i + 1), norm=i != 0, pool=i != c.num_blocks - 1,
                       sn=c.spectral_norm) for i in range(c.num_blocks))
        conv = nn.Conv2d(width(c.num_blocks), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if c.spectral_norm else conv

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = []
        for block in self.down_blocks:
            x = block(x)
            feats.append(x)
        return feats, self.conv(x)


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale of ``config.scales`` (face-vid2vid: scale 1 only).

    forward(image) -> list over scales of (block outputs, patch logits)."""

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        self.pyramid = ImagePyramid(config.scales)
        self.discs = nn.ModuleList(PatchDiscriminator(config) for _ in config.scales)

    def forward(self, image: torch.Tensor) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        return [d(x) for d, x in zip(self.discs, self.pyramid(image))]


def generator_gan_loss(fake: Sequence[tuple[list[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """Hinge generator term: sum over scales of -mean D(generated)."""
    return sum(-logits.mean() for _, logits in fake)


def discriminator_gan_loss(real, fake) -> torch.Tensor:
    """Hinge discriminator term: sum over scales of mean relu(1 - D(real)) + mean relu(1 + D(generated))."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (_, r), (_, f) in zip(real, fake))


def feature_matching_loss(real, fake, weights: Sequence[float]) -> torch.Tensor:
    """sum over scales and blocks i of w_i mean |D_i(real) - D_i(generated)| (real features detached)."""
    total = None
    for (fr, _), (ff, _) in zip(real, fake):
        for w, a, b in zip(weights, fr, ff):
            if w:
                term = w * (a.detach() - b).abs().mean()
                total = term if total is None else total + term
    if total is None:
        raise ValueError("every feature-matching weight is zero")
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


# Landmarks (of the 68) that anchor the 15 keypoints of the CPU preset: jaw ends and chin, brows, nose bridge and
# tip, eye corners, mouth corners, outer and inner lip middles (so that mouth opening moves keypoints).
# A project choice, spread over the face.
ANCHOR_LANDMARKS = (0, 8, 16, 19, 24, 27, 30, 36, 45, 48, 54, 51, 57, 62, 66)


def anchor_landmarks(num_kp: int) -> tuple[int, ...]:
    """The landmark index anchoring each of ``num_kp`` keypoints (``ANCHOR_LANDMARKS`` is for 15)."""
    if num_kp != len(ANCHOR_LANDMARKS):
        raise ValueError(f"the landmark anchor has {len(ANCHOR_LANDMARKS)} landmarks, the renderer {num_kp} "
                         f"keypoints: set lambda_landmarks=0 or use 15 keypoints")
    return ANCHOR_LANDMARKS


def landmark_keypoints(landmarks: torch.Tensor, fallback: torch.Tensor,
                       indices: Sequence[int] = ANCHOR_LANDMARKS) -> torch.Tensor:
    """Keypoints made of landmarks: [B, 68, 2] (the generator's normalised coordinates) -> [B, K, 3] with (x, y) of
    ``landmarks[:, indices]`` and z = 0; rows without landmarks (NaN) keep ``fallback`` [B, K, 3] (e.g. the
    detected keypoints). What ``FaceVid2VidTrainConfig.teacher_landmarks`` drives the generator with."""
    if fallback.ndim != 3 or fallback.shape[1:] != (len(indices), 3) or landmarks.shape[0] != fallback.shape[0]:
        raise ValueError(f"landmarks [B, 68, 2] and fallback keypoints [B, {len(indices)}, 3] expected, "
                         f"got {tuple(landmarks.shape)} and {tuple(fallback.shape)}")
    xy = landmarks[:, list(indices)].to(fallback.dtype)
    ok = torch.isfinite(xy).all(-1).all(-1)  # [B]
    kp = torch.cat([torch.nan_to_num(xy), torch.zeros_like(xy[..., :1])], -1)
    return torch.where(ok[:, None, None], kp, fallback)


def teacher_keypoints(kp_source: torch.Tensor, kp_driving: torch.Tensor, source_landmarks: torch.Tensor,
                      driving_landmarks: torch.Tensor, motion_only: bool = False,
                      indices: Sequence[int] = ANCHOR_LANDMARKS) -> tuple[torch.Tensor, torch.Tensor]:
    """The keypoints ``teacher_landmarks`` drives the generator with -> (source [B, K, 3], driving [B, K, 3]).

    Default: both made of the anchor landmarks (:func:`landmark_keypoints`, z 0). motion_only: the detected source
    keypoints ``kp_source`` and the same moved by the anchor landmarks' motion (x, y; z kept), so the generator
    sees the detectors' placement but the true motion. Rows without landmarks in either frame keep the detected
    keypoints. kp_* [B, K, 3]; landmarks [B, 68, 2] in the generator's normalised coordinates.
    """
    lm_s = landmark_keypoints(source_landmarks, kp_source, indices)
    lm_d = landmark_keypoints(driving_landmarks, kp_driving, indices)
    if not motion_only:
        return lm_s, lm_d
    ok = (torch.isfinite(source_landmarks[:, list(indices)]).all(-1).all(-1)
          & torch.isfinite(driving_landmarks[:, list(indices)]).all(-1).all(-1))[:, None, None]
    return kp_source, torch.where(ok, kp_source + (lm_d - lm_s), kp_driving)


def landmark_anchor_loss(kp: torch.Tensor, landmarks: torch.Tensor,
                         indices: Sequence[int] = ANCHOR_LANDMARKS) -> torch.Tensor:
    """mean |kp_k(x, y) - landmark_{indices[k]}| over keypoints and frames with landmarks.

    kp [B, K, 3] (x, y, z in the generator's normalised coordinates); landmarks [B, 68, 2] in the same
    coordinates (``data.frames.landmarks_to_grid``), NaN rows (no landmarks) left out; 0 when none has any.
    """
    if kp.ndim != 3 or landmarks.ndim != 3 or kp.shape[1] != len(indices):
        raise ValueError(f"kp [B, {len(indices)}, 3] and landmarks [B, 68, 2] expected, "
                         f"got {tuple(kp.shape)} and {tuple(landmarks.shape)}")
    target = landmarks[:, list(indices)].to(kp.dtype)
    ok = torch.isfinite(target).all(-1).all(-1)  # [B]
    if not bool(ok.any()):
        return kp.sum() * 0.0
    return (kp[ok, :, :2] - target[ok]).abs().mean()


def landmark_motion_loss(kp_source: torch.Tensor, kp_driving: torch.Tensor, source_landmarks: torch.Tensor,
                         driving_landmarks: torch.Tensor) -> torch.Tensor:
    """:func:`landmark_anchor_loss` of the keypoints' motion (x_d - x_s)(x, y) [B, 15, 3] against the anchor
    landmarks' motion [B, 68, 2]: how far the keypoints move unlike the face (stage 1's and the MappingNet's
    ``lambda_landmark_motion``; not in face-vid2vid or the paper)."""
    return landmark_anchor_loss(kp_driving - kp_source, driving_landmarks - source_landmarks,
                                anchor_landmarks(kp_source.shape[1]))


MOUTH_BOX_MARGIN = 0.1  # the mouth box of ``mouth_region_l1`` grows by this much on each side (normalised; 3 px at 64)


def mouth_box_mask(source_landmarks: torch.Tensor, driving_landmarks: torch.Tensor, image_size: int,
                   margin: float = MOUTH_BOX_MARGIN) -> torch.Tensor:
    """[B, 1, S, S] 1 inside the box around the lips (``landmarks.MOUTH_LANDMARKS``) of both frames, grown by
    ``margin``, 0 elsewhere and on rows without landmarks. Landmarks [B, 68, 2] in the generator's normalised
    coordinates (x along the width, -1 / +1 at the first / last pixel centre)."""
    lips = torch.cat([source_landmarks[:, list(MOUTH_LANDMARKS)], driving_landmarks[:, list(MOUTH_LANDMARKS)]], 1)
    ok = torch.isfinite(lips).all(-1).all(-1)  # [B]
    lips = torch.nan_to_num(lips)
    lo, hi = lips.amin(1) - margin, lips.amax(1) + margin  # [B, 2] (x, y)
    axis = torch.linspace(-1.0, 1.0, image_size, device=lips.device, dtype=lips.dtype)
    inside_x = (axis[None] >= lo[:, :1]) & (axis[None] <= hi[:, :1])  # [B, S]
    inside_y = (axis[None] >= lo[:, 1:]) & (axis[None] <= hi[:, 1:])
    mask = inside_y[:, :, None] & inside_x[:, None, :] & ok[:, None, None]
    return mask[:, None].to(lips.dtype)


def mouth_region_l1(pred: torch.Tensor, target: torch.Tensor, source_landmarks: torch.Tensor,
                    driving_landmarks: torch.Tensor, margin: float = MOUTH_BOX_MARGIN) -> torch.Tensor:
    """Mean |pred - target| inside the mouth box (:func:`mouth_box_mask`) of frames [B, 3, S, S]; 0 when no row
    has landmarks. Not face-vid2vid (``lambda_mouth``): at 64 px the lips are a few percent of the frame, so the
    whole-frame terms barely reward moving them (results/facerender-motion-cpu-default-corpus.md)."""
    mask = mouth_box_mask(source_landmarks, driving_landmarks, pred.shape[-1], margin).to(pred.dtype)
    area = mask.sum() * pred.shape[1]
    if not bool(area > 0):
        return pred.sum() * 0.0
    return ((pred - target).abs() * mask).sum() / area


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
