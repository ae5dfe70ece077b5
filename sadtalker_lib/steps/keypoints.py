"""Keypoint motion of face-vid2vid (SadTalker Sec. 3.3, Fig. 5): driven keypoints x = R x_c + t + delta.

The mapping net (or the HEEstimator) predicts, per frame, head-pose *bins* for yaw / pitch / roll,
a translation t [B, 3] and expression deltas [B, 3K]. This module turns them into driven keypoints:

    headpose_pred_to_degree : 66 bin logits -> degrees  (softmax expectation: sum p_i * i * 3 - 99)
    get_rotation_matrix     : degrees -> R = R_pitch R_yaw R_roll   [B, 3, 3]
    keypoint_transformation : kp_canonical [B, K, 3], he -> R kp + t + exp   [B, K, 3]
    facevid2vid_keypoints   : the same with all of t, as face-vid2vid trains its HEEstimator (renderer stage 1)

Facts and quirks from ``src/facerender/modules/make_animation.py``: pi is taken as 3.14 (``OFFICIAL_PI``) and
only the y translation survives (``keep_only_y_translation``); both are tagged as official quirks below. The
second is SadTalker's inference on the MappingNet's output; face-vid2vid itself (``modules/model.py`` of its training
code, with which the official HEEstimator was trained) adds all of t, so wherever the HEEstimator drives the
keypoints (the renderer's stage 1, its held-out rows, the MappingNet's Eq. 14 targets) ``facevid2vid_keypoints`` is
used instead.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

__all__ = [
    "HEADPOSE_BINS",
    "OFFICIAL_PI",
    "keep_only_y_translation",
    "headpose_pred_to_degree",
    "get_rotation_matrix",
    "pose_degrees",
    "keypoint_transformation",
    "facevid2vid_keypoints",
]

# Head-pose bins of the mapping net / HEEstimator (make_animation.py headpose_pred_to_degree):
# 66 bins of 3 degrees, bin i stands for 3 i - 99 degrees, i.e. -99 .. +96.
HEADPOSE_BINS = 66
HEADPOSE_BIN_DEGREES = 3
HEADPOSE_OFFSET_DEGREES = 99

# OFFICIAL QUIRK: src/facerender/modules/make_animation.py get_rotation_matrix converts degrees to radians with
# pi taken as 3.14 (``yaw / 180 * 3.14``), so every rotation is 0.05 % smaller than asked.
OFFICIAL_PI = 3.14


def keep_only_y_translation(t: torch.Tensor) -> torch.Tensor:
    """The translation that the official keypoint transformation actually applies: t [B, 3] with x and z zeroed.

    # OFFICIAL QUIRK: src/facerender/modules/make_animation.py keypoint_transformation does
    ``t[:, 0] = t[:, 0] * 0`` and ``t[:, 2] = t[:, 2] * 0`` IN PLACE on the mapping net's output, so only the
    vertical translation moves the keypoints (and the caller's ``he['t']`` is modified as a side effect). Here a
    copy is returned and the caller's tensor is left untouched; the rendered result is the same.
    """
    kept = t.new_zeros(t.shape)
    kept[:, 1] = t[:, 1]
    return kept


def headpose_pred_to_degree(pred: torch.Tensor) -> torch.Tensor:
    """Bin logits [B, 66] -> angle in degrees [B]: softmax(pred) . [0..65] * 3 - 99."""
    if pred.ndim != 2 or pred.shape[1] != HEADPOSE_BINS:
        raise ValueError(f"expected head-pose logits [B, {HEADPOSE_BINS}], got {tuple(pred.shape)}")
    idx = torch.arange(HEADPOSE_BINS, device=pred.device).to(pred.dtype)
    prob = F.softmax(pred, dim=1)
    return torch.sum(prob * idx, 1) * HEADPOSE_BIN_DEGREES - HEADPOSE_OFFSET_DEGREES


def get_rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Degrees [B] each -> rotation [B, 3, 3] = R_pitch (about x) @ R_yaw (about y) @ R_roll (about z).

    Radians are degrees / 180 * 3.14 (official quirk ``OFFICIAL_PI``).
    """
    yaw, pitch, roll = (torch.as_tensor(a, dtype=torch.float32) if not torch.is_tensor(a) else a
                        for a in (yaw, pitch, roll))
    if not (yaw.ndim == pitch.ndim == roll.ndim == 1 and yaw.shape == pitch.shape == roll.shape):
        raise ValueError(f"yaw, pitch, roll must be [B] each, got {tuple(yaw.shape)}, {tuple(pitch.shape)}, "
                         f"{tuple(roll.shape)}")
    yaw, pitch, roll = (a / 180 * OFFICIAL_PI for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def mat(*rows):  # nine [B] tensors, row-major -> [B, 3, 3]
        return torch.stack(rows, dim=1).view(-1, 3, 3)

    pitch_mat = mat(one, zero, zero,
                    zero, torch.cos(pitch), -torch.sin(pitch),
                    zero, torch.sin(pitch), torch.cos(pitch))
    yaw_mat = mat(torch.cos(yaw), zero, torch.sin(yaw),
                  zero, one, zero,
                  -torch.sin(yaw), zero, torch.cos(yaw))
    roll_mat = mat(torch.cos(roll), -torch.sin(roll), zero,
                   torch.sin(roll), torch.cos(roll), zero,
                   zero, zero, one)
    return torch.einsum("bij,bjk,bkm->bim", pitch_mat, yaw_mat, roll_mat)


def pose_degrees(he: Mapping[str, torch.Tensor], *, yaw=None, pitch=None, roll=None):
    """(yaw, pitch, roll) in degrees [B] each from ``he``'s bin logits.

    An angle given here (degrees [B]) replaces the predicted one, as ``--input_yaw/pitch/roll`` do in the
    official make_animation; the official dict keys ``yaw_in`` / ``pitch_in`` / ``roll_in`` work too.
    """
    out = []
    for name, override in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        if override is None:
            override = he.get(f"{name}_in")
        out.append(headpose_pred_to_degree(he[name]) if override is None else override)
    return tuple(out)


def keypoint_transformation(kp_canonical, he: Mapping[str, torch.Tensor], wo_exp: bool = False, *,
                            yaw=None, pitch=None, roll=None, full_translation: bool = False) -> torch.Tensor:
    """Driven keypoints [B, K, 3] = R(yaw, pitch, roll) kp_canonical + (0, t_y, 0) + exp.

    kp_canonical: [B, K, 3] (or the official ``{"value": tensor}`` dict).
    he: dict with ``yaw``, ``pitch``, ``roll`` [B, 66] bin logits, ``t`` [B, 3], ``exp`` [B, 3K]
        (the mapping net / HEEstimator output). Its tensors are not modified.
    wo_exp: drop the expression deltas. yaw / pitch / roll: optional degree overrides [B].
    full_translation: add all of t (face-vid2vid's own transformation: ``facevid2vid_keypoints``); False (default):
    SadTalker's inference, only t_y (``keep_only_y_translation``).
    """
    kp = kp_canonical["value"] if isinstance(kp_canonical, Mapping) else kp_canonical
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"kp_canonical must be [B, K, 3], got {tuple(kp.shape)}")
    b, k, _ = kp.shape
    t, exp = he["t"], he["exp"]
    if tuple(t.shape) != (b, 3) or tuple(exp.shape) != (b, 3 * k):
        raise ValueError(f"he['t'] must be [B={b}, 3] and he['exp'] [B, {3 * k}], got {tuple(t.shape)}, "
                         f"{tuple(exp.shape)}")
    rot = get_rotation_matrix(*pose_degrees(he, yaw=yaw, pitch=pitch, roll=roll))  # [B, 3, 3]
    kp_rotated = torch.einsum("bmp,bkp->bkm", rot, kp)  # R @ x for each keypoint
    kp_t = kp_rotated + (t if full_translation else keep_only_y_translation(t)).unsqueeze(1)  # quirk: x, z dropped
    exp = exp.view(b, k, 3)
    if wo_exp:
        exp = exp * 0
    return kp_t + exp


def facevid2vid_keypoints(kp_canonical, he: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Keypoints [B, K, 3] = R kp_canonical + t + exp from the HEEstimator's output, with all three components of t as
    face-vid2vid trains and drives with them (SadTalker's inference keeps only t_y, ``keypoint_transformation``'s
    default: with it the HEEstimator could move the head sideways only through the expression deltas, which the
    deformation prior holds near zero). Arguments as :func:`keypoint_transformation`."""
    return keypoint_transformation(kp_canonical, he, full_translation=True)
