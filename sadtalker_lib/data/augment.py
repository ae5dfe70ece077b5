"""face-vid2vid's training augmentation of (source, driving) pairs (stage 1 of FaceRender).

face-vid2vid trains with the augmentation of its first-order-model code base (``config/vox-256.yaml``
``augmentation_params``): each training video is flipped horizontally with probability 0.5, played backwards with
probability 0.5 (``time_flip``), and colour-jittered with brightness, contrast, saturation and hue 0.1, the same
jitter for every frame of the video. Here the unit is a pair of frames of one clip:

* **horizontal flip** (:func:`flip_pairs`): both frames mirrored, and every label that comes with them mirrored
  too: the landmarks (``x -> -x`` in the renderer's normalised coordinates, then renumbered with
  ``landmarks.LANDMARK_MIRROR`` so that point 36 stays the right eye's outer corner), the head pose of the
  coefficients and their windows (pitch kept, yaw and roll negated, x translation negated: the closed-form mirror of
  a pose). The 64 expression coefficients are left as they are: the morphable models' expression bases are not
  mirror-symmetric, so they have no closed-form mirror. Stage 1 reads only the pose of the coefficients (head-pose
  targets); the MappingNet stage, which reads the expression, is not augmented.
* **time flip**: the two frames of a pair swapped (``FaceRenderClips.sample(time_flip=...)``, where the pair's
  windows are built).
* **colour jitter** (:func:`jitter_pairs`): per pair, one brightness, contrast and saturation factor drawn from
  ``[1 - a, 1 + a]`` and one hue shift from ``[-h, h]`` (turns), applied to both frames in that order
  (torchvision's ``ColorJitter`` draws a random order; the order here is fixed).

:func:`augment_pairs` does the flip and the jitter with a numpy ``Generator`` (the training step's: a resumed run
draws the same augmentation).
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ..coeffs import ROLL, TRANS, YAW
from ..landmarks import LANDMARK_MIRROR
from .frames import FramePairs

__all__ = ["FV2V_JITTER", "mirror_pose_columns", "flip_pairs", "jitter_pairs", "check_jitter", "augment_pairs"]

# face-vid2vid / first-order-model config/vox-256.yaml augmentation_params.jitter_param: brightness, contrast,
# saturation, hue
FV2V_JITTER: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.1)


def mirror_pose_columns(coeffs: torch.Tensor, dim: int = -1, *, yaw: int = YAW, roll: int = ROLL,
                        tx: int = TRANS.start) -> torch.Tensor:
    """Coefficients along ``dim`` (by default the motion layout exp 64 | pitch, yaw, roll | tx, ty, tz; other
    layouts name their ``yaw`` / ``roll`` / ``tx`` columns) -> the pose of the horizontal mirror: yaw, roll and tx
    negated (pitch, ty, tz and the expression kept; exact for a face model whose mean shape is symmetric)."""
    c = torch.as_tensor(coeffs).clone()
    sign = torch.ones(c.shape[dim], dtype=c.dtype, device=c.device)
    sign[[yaw, roll, tx]] = -1.0
    shape = [1] * c.ndim
    shape[dim] = -1
    return c * sign.view(shape)


def _mirror_landmarks(lm: torch.Tensor) -> torch.Tensor:
    """[B, 68, 2] normalised (x, y) landmarks (NaN allowed) -> those of the mirrored frames."""
    out = lm[:, list(LANDMARK_MIRROR)].clone()
    out[..., 0] = -out[..., 0]
    return out


def flip_pairs(pairs: FramePairs, which: Sequence[bool] | np.ndarray | torch.Tensor) -> FramePairs:
    """The pairs with rows ``which`` ([B] bool) mirrored left-right, frames and labels (module docstring)."""
    m = torch.as_tensor(np.asarray(which, dtype=bool))
    if m.shape != (len(pairs),):
        raise ValueError(f"which must be [{len(pairs)}] booleans, got shape {tuple(m.shape)}")
    if not bool(m.any()):
        return pairs
    out = {f.name: getattr(pairs, f.name).clone() for f in fields(pairs)}
    for name in ("source", "driving"):
        out[name][m] = torch.flip(out[name][m], dims=[-1])
    for name in ("source_landmarks", "driving_landmarks"):
        out[name][m] = _mirror_landmarks(out[name][m])
    for name in ("source_coeffs", "driving_coeffs"):
        out[name][m] = mirror_pose_columns(out[name][m], dim=-1)
    for name in ("source_window", "driving_window"):  # [B, C, W]
        out[name][m] = mirror_pose_columns(out[name][m], dim=-2)
    return FramePairs(**out)


def jitter_pairs(pairs: FramePairs, factors: np.ndarray) -> FramePairs:
    """Both frames of pair ``i`` colour-jittered by ``factors[i]`` = (brightness, contrast, saturation factors;
    hue shift in turns), in that order; frames stay in [0, 1]."""
    f = np.asarray(factors, dtype=np.float64)
    if f.shape != (len(pairs), 4):
        raise ValueError(f"factors must be [{len(pairs)}, 4], got shape {f.shape}")
    frames = torch.stack([pairs.source, pairs.driving], 1)  # [B, 2, 3, S, S]
    out = []
    for x, (b, c, s, h) in zip(frames, f):
        x = TF.adjust_brightness(x, float(b))
        x = TF.adjust_contrast(x, float(c))
        x = TF.adjust_saturation(x, float(s))
        x = TF.adjust_hue(x, float(h))
        out.append(x.clamp(0.0, 1.0))
    y = torch.stack(out)
    return replace(pairs, source=y[:, 0].contiguous(), driving=y[:, 1].contiguous())


def check_jitter(jitter: Sequence[float]) -> np.ndarray:
    """``jitter`` as an array, or ValueError unless it is (brightness, contrast, saturation, hue), each >= 0, hue
    <= 0.5 turns (the configs call it)."""
    a = np.asarray(jitter, dtype=np.float64)
    if a.shape != (4,) or not np.isfinite(a).all() or (a < 0).any() or a[3] > 0.5:
        raise ValueError(f"jitter is (brightness, contrast, saturation, hue), each >= 0 and hue <= 0.5, got {jitter}")
    return a


def augment_pairs(pairs: FramePairs, rng: np.random.Generator, *, horizontal_flip: bool = True,
                  jitter: Sequence[float] = FV2V_JITTER) -> FramePairs:
    """Each pair mirrored with probability 0.5 (``horizontal_flip``) and colour-jittered with ``jitter`` =
    (brightness, contrast, saturation, hue; all 0: none), drawn from ``rng``."""
    b = len(pairs)
    if horizontal_flip:
        pairs = flip_pairs(pairs, rng.random(b) < 0.5)
    a = check_jitter(jitter)
    if a.any():
        u = rng.uniform(-1.0, 1.0, size=(b, 4)) * a
        pairs = jitter_pairs(pairs, np.concatenate([1.0 + u[:, :3], u[:, 3:]], 1))
    return pairs
