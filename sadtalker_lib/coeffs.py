"""The 3DMM coefficient layouts, once. Every other module imports these names; no bare ``64:70`` elsewhere.

Official sources: ``src/face3d/models/bfm.py`` ``split_coeff`` (the 257 vector that ``net_recon`` outputs) and
``src/utils/preprocess.py`` ``CropAndExtract.generate`` (the 70 / 73 vectors that SadTalker animates).

    257 = id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans 3        (regressor output, paper Sec. 3.1)
     70 = exp 64 | angle 3 | trans 3                                     (beta [T, 64] | rho [T, 6], Sec. 3.2)
     73 = 70 | crop parameters s, tx, ty                                 (the source ``.mat``; full modes)

Angles are pitch, yaw, roll in radians, in that order (``angle[..., 0]`` is pitch).
"""
from __future__ import annotations

__all__ = [
    "ID_DIM", "EXP_DIM", "TEX_DIM", "ANGLE_DIM", "GAMMA_DIM", "TRANS_DIM", "POSE_DIM", "CROP_DIM",
    "MOTION_DIM", "FULL_DIM", "NUM_LANDMARKS", "COEFF_257_SLICES",
    "EXP", "ANGLE", "TRANS", "POSE", "CROP", "PITCH", "YAW", "ROLL",
]

# --- the 257 vector (split_coeff) ------------------------------------------------------------------
ID_DIM, EXP_DIM, TEX_DIM, ANGLE_DIM, GAMMA_DIM, TRANS_DIM = 80, 64, 80, 3, 27, 3
COEFF_257_SLICES: dict[str, slice] = {}
_start = 0
for _name, _dim in (("id", ID_DIM), ("exp", EXP_DIM), ("tex", TEX_DIM), ("angle", ANGLE_DIM),
                    ("gamma", GAMMA_DIM), ("trans", TRANS_DIM)):
    COEFF_257_SLICES[_name] = slice(_start, _start + _dim)
    _start += _dim
assert _start == 257
del _start, _name, _dim

# --- the 70 / 73 vectors (what SadTalker animates; the source .mat) ----------------------------------
POSE_DIM = ANGLE_DIM + TRANS_DIM  # rho = [r (3 angles), t (3)] = 6
MOTION_DIM = EXP_DIM + POSE_DIM  # 70
CROP_DIM = 3  # s, tx, ty: align_img's trans_params[2:]
FULL_DIM = MOTION_DIM + CROP_DIM  # 73

EXP = slice(0, EXP_DIM)  # beta, [..., 64]
ANGLE = slice(EXP_DIM, EXP_DIM + ANGLE_DIM)  # pitch, yaw, roll (radians), [..., 3]
TRANS = slice(EXP_DIM + ANGLE_DIM, MOTION_DIM)  # [..., 3]
POSE = slice(EXP_DIM, MOTION_DIM)  # rho = angle | trans, [..., 6]
CROP = slice(MOTION_DIM, FULL_DIM)  # s, tx, ty, [..., 3]
PITCH, YAW, ROLL = EXP_DIM, EXP_DIM + 1, EXP_DIM + 2  # single columns of ANGLE

from .landmarks import NUM_LANDMARKS  # noqa: E402  (re-exported: the landmark layout lives in landmarks.py)
