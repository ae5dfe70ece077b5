"""The stand-in face's geometry: a 68-landmark template and a depth surface (steps 1-2 of ``default.py``).

1. **A 68-landmark template** (iBUG-300W / dlib order) in the BFM's units (1 unit = 10 cm; x right, y up,
   z toward the camera). Eye centres, nose tip and mouth corners are the five standard 3-D points the
   official 224-px alignment uses (``face.align.LM3D_5_STANDARD``); the rest follows average adult
   anthropometry (see the ``default.py`` docstring for the norms).
2. **A depth surface** z(x, y): an elliptic head section that narrows along the jaw, plus Gaussian nose,
   nostrils, eye sockets, brow ridge, lips, chin and cheekbones. Landmarks and mesh vertices lie on it.

The mesh, the bases and the model built on this are in ``default.py``.
"""
from __future__ import annotations

import numpy as np

from ..face.align import LM3D_5_STANDARD

__all__ = [
    "JAW", "BROW_R", "BROW_L", "NOSE_BRIDGE", "NOSTRILS", "EYE_R", "EYE_L", "LIP_OUTER", "LIP_INNER",
    "JAW_HALF_WIDTH", "JAW_TOP_Y", "JAW_DEPTH", "JAW_EXPONENT", "HEAD_DEPTH", "FRONT_KNOTS", "NOSE_KNOTS",
    "jaw_curve", "jaw_half_width", "gauss", "spline", "face_depth", "landmark_template",
]

# Landmark groups (0-based iBUG-68 indices)
JAW, BROW_R, BROW_L, NOSE_BRIDGE, NOSTRILS = range(0, 17), range(17, 22), range(22, 27), range(27, 31), range(31, 36)
EYE_R, EYE_L, LIP_OUTER, LIP_INNER = range(36, 42), range(42, 48), range(48, 60), range(60, 68)

# ---------------------------------------------------------------------------------------------
# 1. The 68-landmark template (x, y)
# ---------------------------------------------------------------------------------------------
def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(-x, y) for x, y in points]


# Jaw contour: a superellipse |x/a|^p + |(y0 - y)/b|^p = 1 (lower half), 17 points equally spaced by arc length.
JAW_HALF_WIDTH, JAW_TOP_Y, JAW_DEPTH, JAW_EXPONENT = 0.73, 0.24, 1.06, 2.4


def jaw_curve(num: int, a: float = JAW_HALF_WIDTH) -> np.ndarray:
    t = np.linspace(np.pi, 2 * np.pi, 4001)  # from the image-left end, under the chin, to the right end
    c, s = np.cos(t), np.sin(t)
    x = a * np.sign(c) * np.abs(c) ** (2 / JAW_EXPONENT)
    y = JAW_TOP_Y - JAW_DEPTH * np.abs(s) ** (2 / JAW_EXPONENT)
    seg = np.hypot(np.diff(x), np.diff(y))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0, arc[-1], num)
    return np.stack([np.interp(targets, arc, x), np.interp(targets, arc, y)], 1)


def jaw_half_width(y: np.ndarray) -> np.ndarray:
    """Half width of the jaw superellipse at height y (JAW_HALF_WIDTH above its top, 0 below the chin)."""
    r = np.clip((JAW_TOP_Y - np.asarray(y, np.float64)) / JAW_DEPTH, 0.0, 1.0)
    return JAW_HALF_WIDTH * (1.0 - r**JAW_EXPONENT) ** (1 / JAW_EXPONENT)


def _template_xy() -> np.ndarray:
    (ex_r, ey_r, _), (ex_l, ey_l, _), (nx, ny, _), (mx_r, my_r, _), (mx_l, my_l, _) = LM3D_5_STANDARD.astype(np.float64)
    eye_x, eye_y = (ex_l - ex_r) / 2, (ey_r + ey_l) / 2  # symmetrised: 0.310, 0.290
    mouth_x, mouth_y = (mx_l - mx_r) / 2, (my_r + my_l) / 2  # 0.250, -0.381
    nose_y = ny  # -0.046
    pts: list[tuple[float, float]] = [tuple(p) for p in jaw_curve(17)]  # 0-16
    brow = [(-0.62, 0.41), (-0.53, 0.47), (-0.42, 0.50), (-0.30, 0.50), (-0.17, 0.475)]  # 17-21, outer -> inner
    pts += brow + _mirror(brow)[::-1]  # 22-26, inner -> outer
    bridge_top = eye_y + 0.01
    pts += [(0.0, bridge_top + (nose_y - bridge_top) * k / 3) for k in range(4)]  # 27-30, 30 = nose tip
    pts += [(-0.13, -0.10), (-0.065, -0.12), (0.0, -0.13), (0.065, -0.12), (0.13, -0.10)]  # 31-35
    # eyes: corners at +-0.1475 around the centre (fissure 2.95 cm), outer corner 1 mm higher (canthal tilt),
    # upper lid points 4.5 mm above and lower lid points 3.5 mm below the corner line, at 1/3 and 2/3
    hw, up, lo, lid = 0.1475, 0.045, 0.035, 0.055

    def eye(cx: float, outer_sign: float) -> list[tuple[float, float]]:
        outer = (cx + outer_sign * hw, eye_y + 0.005)
        inner = (cx - outer_sign * hw, eye_y - 0.005)

        def line(x: float) -> float:  # corner line
            return outer[1] + (inner[1] - outer[1]) * (x - outer[0]) / (inner[0] - outer[0])

        u1, u2 = cx + outer_sign * lid, cx - outer_sign * lid
        return [outer, (u1, line(u1) + up), (u2, line(u2) + up), inner, (u2, line(u2) - lo), (u1, line(u1) - lo)]

    right = eye(-eye_x, -1.0)  # 36 outer, 37, 38 upper, 39 inner, 40, 41 lower
    left = eye(eye_x, +1.0)  # 45 outer ... reorder to 42 inner, 43, 44 upper, 45 outer, 46, 47 lower
    pts += right + [left[3], left[2], left[1], left[0], left[5], left[4]]
    sto = -0.356  # stomion (the mouth line at the centre)
    outer = [(-mouth_x, mouth_y), (-0.16, -0.31), (-0.065, -0.275), (0.0, -0.285), (0.065, -0.275), (0.16, -0.31),
             (mouth_x, mouth_y), (0.165, -0.445), (0.08, -0.468), (0.0, -0.472), (-0.08, -0.468), (-0.165, -0.445)]
    inner = [(-0.22, -0.375), (-0.09, sto - 0.002), (0.0, sto), (0.09, sto - 0.002),
             (0.22, -0.375), (0.09, sto - 0.008), (0.0, sto - 0.006), (-0.09, sto - 0.008)]
    pts += outer + inner
    out = np.array(pts, np.float64)
    assert out.shape == (68, 2)
    return out


# ---------------------------------------------------------------------------------------------
# 2. The depth surface
# ---------------------------------------------------------------------------------------------
HEAD_DEPTH = 1.8  # z drop from the face front to the side of the head ellipse
FRONT_KNOTS = (  # midline "face plane" depth without nose / lips / chin features: (y, z)
    (-1.10, -0.25), (-0.90, 0.05), (-0.75, 0.22), (-0.50, 0.29), (-0.30, 0.31), (0.00, 0.31),
    (0.30, 0.30), (0.45, 0.33), (0.70, 0.28), (1.00, 0.12), (1.20, -0.05),
)
NOSE_KNOTS = (  # nose ridge height above the face plane along y: (y, h)
    (0.40, 0.0), (0.30, 0.01), (0.185, 0.06), (0.07, 0.12), (-0.01, 0.20), (-0.046, 0.23),
    (-0.09, 0.17), (-0.13, 0.04), (-0.17, 0.0),
)


def spline(knots, y):
    from scipy.interpolate import PchipInterpolator

    k = np.asarray(sorted(knots), np.float64)
    return PchipInterpolator(k[:, 0], k[:, 1], extrapolate=True)(np.clip(y, k[0, 0], k[-1, 0]))


def gauss(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def face_depth(x, y) -> np.ndarray:
    """z of the stand-in face surface at (x, y) (units; larger = closer to the camera)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    # the head section: narrows along the jaw (rounder toward the chin), broadens over the forehead
    hw = jaw_half_width(y)
    ax = hw + 0.13 + 0.25 * (1 - hw / JAW_HALF_WIDTH) + 0.2 * np.clip((y - 0.25) / 0.3, 0, 1) ** 2
    r = np.clip(x / ax, -0.995, 0.995)
    z = spline(FRONT_KNOTS, y) - HEAD_DEPTH * (1.0 - np.sqrt(1.0 - r**2))
    ax_abs = np.abs(x)
    sigma_nose = np.interp(y, [-0.1, 0.3], [0.085, 0.045])
    z = z + spline(NOSE_KNOTS, y) * np.exp(-0.5 * (x / sigma_nose) ** 2)
    z = z + 0.07 * gauss(ax_abs, y, 0.11, -0.08, 0.04, 0.04)  # nostril wings
    z = z - 0.05 * gauss(ax_abs, y, 0.30, 0.29, 0.09, 0.06)  # eye sockets
    z = z + 0.03 * gauss(ax_abs, y, 0.31, 0.29, 0.07, 0.035)  # eyeballs
    z = z + 0.03 * np.exp(-0.5 * ((y - 0.45) / 0.05) ** 2) * gauss(ax_abs, 0, 0.25, 0, 0.3, 1)  # brow ridge
    z = z + 0.07 * gauss(x, y, 0.0, -0.37, 0.17, 0.07)  # lips
    z = z - 0.03 * gauss(x, y, 0.0, -0.55, 0.15, 0.04)  # groove under the lower lip
    z = z + 0.05 * gauss(x, y, 0.0, -0.68, 0.15, 0.08)  # chin
    z = z + 0.04 * gauss(ax_abs, y, 0.45, 0.05, 0.10, 0.10)  # cheekbones
    return z


def landmark_template() -> np.ndarray:
    """The stand-in's 68 landmarks [68, 3] (x right, y up, z toward the camera; 1 unit = 10 cm)."""
    xy = _template_xy()
    return np.concatenate([xy, face_depth(xy[:, 0], xy[:, 1])[:, None]], 1)
