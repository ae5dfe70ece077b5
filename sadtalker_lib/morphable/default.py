"""``DefaultMorphableModel``: an offline STAND-IN for the Basel Face Model, built by this project's code.

The BFM (``BFM_model_front.mat``, ~35k vertices, bases learned from 3-D scans) is licensed and cannot be
shipped. This module builds, deterministically and in well under a second, a small face model with the same
interface (80 identity and 64 expression dimensions, 80 texture dimensions, 68 landmarks, the official
camera), so that fitting, the landmark losses of ExpNet and every picture work without any download.
It is NOT the BFM: its coefficients do not mean what the BFM's coefficients mean, and coefficients fitted
with one model must not be fed to networks trained on the other.

How it is made (all numbers below are written here, from public facts; nothing is learned or copied):

Steps 1-2 (the landmark template and the depth surface) are in ``template.py``.

1. **A 68-landmark template** (iBUG-300W / dlib order) in the BFM's units (1 unit = 10 cm; x right, y up,
   z toward the camera). Eye centres, nose tip and mouth corners are the five standard 3-D points the
   official 224-px alignment uses (``face.align.LM3D_5_STANDARD``); the rest follows average adult
   anthropometry (Farkas-style norms: intercanthal width ~3.2 cm, biocular width ~9 cm, eye fissure
   height ~0.8-1 cm, mouth width ~5 cm, upper / lower vermilion ~0.8 / 1 cm, nose width at the nostrils
   ~2.6 cm, brows ~2 cm above the eyes, chin ~11 cm below the eyes, face width at the ears ~14.6 cm).
2. **A depth surface** z(x, y): an elliptic head section that narrows along the jaw, plus Gaussian nose,
   nostrils, eye sockets, brow ridge, lips, chin and cheekbones. Landmarks and mesh vertices lie on it.
3. **A coarse mesh**: the 68 landmarks, two eye centres, an outline ring around the jaw and forehead and
   a grid inside, Delaunay-triangulated in an "open-mouth" layout; triangles inside the lips are removed
   so the mouth can open. About 1000 vertices.
4. **Expression directions**, designed first (see ``EXPRESSION_NAMES``: jaw open, lip corners, pucker,
   upper / lower lip, each eye's blink, brows, ...), then generic smooth local fields around the mouth and
   eyes, orthogonalised against everything before them. ``blink_right`` = 1 closes the subject's right
   eye (landmarks 36-41) exactly; ``jaw_open`` = 1 opens the mouth by about 1 cm.
5. **Identity directions**, designed first (``IDENTITY_NAMES``: face width, length, depth, jaw, chin,
   nose, eyes, mouth, lips, brows, ...) then global low-frequency cosine fields, orthogonalised.
6. **Texture**: a flat skin tone with lips, brows and eyes, a few designed colour directions and generic
   cosine fields (0-255 units, like the BFM).
"""
from __future__ import annotations

import functools

import numpy as np

from .model import EXP_DIM, ID_DIM, TEX_DIM, MorphableModel, PerspectiveCamera
from .template import (
    BROW_L,
    BROW_R,
    EYE_L,
    EYE_R,
    JAW_HALF_WIDTH,
    JAW_TOP_Y,
    LIP_INNER,
    LIP_OUTER,
    NOSE_KNOTS,
    face_depth,
    gauss,
    jaw_curve,
    landmark_template,
    spline,
)

__all__ = [
    "EXPRESSION_NAMES",
    "IDENTITY_NAMES",
    "TEXTURE_NAMES",
    "landmark_template",
    "face_depth",
    "build_default_arrays",
    "DefaultMorphableModel",
]

EXPRESSION_NAMES: tuple[str, ...] = (
    "jaw_open",  # lower jaw rotates about the ear axis; ~1 cm mouth opening per unit
    "lip_corners_up",  # smile: corners up and out
    "lip_corners_down",  # frown: corners down
    "lip_stretch",  # corners straight out
    "pucker",  # lips together and forward
    "upper_lip_raise",
    "lower_lip_depress",
    "lips_part",  # lips apart without the jaw
    "mouth_shift",  # mouth toward +x (image right)
    "blink_right",  # 1 = subject's right eye (landmarks 36-41, image left) closed
    "blink_left",  # 1 = subject's left eye (landmarks 42-47) closed
    "brows_raise",
    "brows_lower",  # inner brows down and together
    "cheek_puff",
    "nose_wrinkle",
    "squint",  # lower lids up
)
IDENTITY_NAMES: tuple[str, ...] = (
    "face_width",
    "face_length",
    "face_depth",
    "jaw_width",
    "chin_length",
    "nose_length",
    "nose_width",
    "nose_height",
    "eye_spacing",
    "eye_size",
    "eye_tilt",
    "mouth_width",
    "lip_thickness",
    "brow_height",
    "forehead_height",
    "cheek_fullness",
)
TEXTURE_NAMES: tuple[str, ...] = ("brightness", "redness", "yellowness", "lip_colour", "brow_darkness")

MESH_SPACING = 0.055  # grid step inside the face (units)
OUTLINE_MARGIN = 0.06  # how far the mesh reaches beyond the jaw contour
FOREHEAD_TOP = 0.98  # y of the top of the mesh
GENERIC_EXP_MAX = 0.03  # largest vertex displacement of one unit of a generic expression direction (3 mm)
GENERIC_ID_MAX = 0.025
GENERIC_TEX_AMPLITUDE = 12.0  # 0-255 units


# ---------------------------------------------------------------------------------------------
# 3. The mesh
# ---------------------------------------------------------------------------------------------
def _point_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    from matplotlib.path import Path as _MplPath

    return _MplPath(poly).contains_points(points)


def _mouth_line(x: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """y of the line between the lips (mid of the inner upper and lower lip), flat beyond the corners."""
    upper = lm[[60, 61, 62, 63, 64]]
    lower = lm[[60, 67, 66, 65, 64]]
    mid = (upper + lower) / 2
    return np.interp(x, mid[:, 0], mid[:, 1])


def _jaw_weight(v: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """1 for vertices that move with the lower jaw, 0 for the upper face; sharp between the lips, soft on the cheeks."""
    x, y = v[:, 0], v[:, 1]
    corner = np.abs(lm[60, 0])
    tau = 0.0015 + 0.5 * np.clip(np.abs(x) - corner, 0, None) ** 1.5
    w = 1.0 / (1.0 + np.exp(np.clip((y - _mouth_line(x, lm)) / tau, -60, 60)))
    # the jaw hinge is near the ears: the top of the cheeks does not move
    return w * np.clip((JAW_TOP_Y + 0.05 - y) / 0.35, 0, 1)


def _build_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices [N, 3] (rows 0-67 = the landmarks, 68/69 = eye centres) and faces [F, 3] (0-based)."""
    from scipy.spatial import Delaunay

    lm = landmark_template()
    eye_centres = np.stack([lm[EYE_R].mean(0), lm[EYE_L].mean(0)])
    eye_centres[:, 2] = face_depth(eye_centres[:, 0], eye_centres[:, 1])
    feature_xy = np.concatenate([lm[:, :2], eye_centres[:, :2]])
    # the outline: the jaw contour pushed out by OUTLINE_MARGIN, closed by an elliptic forehead arc
    jaw = jaw_curve(400, JAW_HALF_WIDTH + OUTLINE_MARGIN)
    jaw[:, 1] -= OUTLINE_MARGIN * np.sin(np.linspace(0, np.pi, len(jaw)))
    top_a = JAW_HALF_WIDTH + OUTLINE_MARGIN
    phi = np.linspace(0, np.pi, 300)
    arc = np.stack([top_a * np.cos(phi), JAW_TOP_Y + (FOREHEAD_TOP - JAW_TOP_Y) * np.sin(phi)], 1)
    outline = np.concatenate([jaw, arc[1:-1]])
    seg = np.hypot(*np.diff(np.concatenate([outline, outline[:1]]), axis=0).T)
    arclen = np.concatenate([[0], np.cumsum(seg)])
    n_ring = int(arclen[-1] / MESH_SPACING)
    t = np.linspace(0, arclen[-1], n_ring, endpoint=False)
    closed = np.concatenate([outline, outline[:1]])
    ring = np.stack([np.interp(t, arclen, closed[:, 0]), np.interp(t, arclen, closed[:, 1])], 1)
    # a staggered grid inside the outline, away from the features and the ring
    h = MESH_SPACING
    ys = np.arange(-1.0, FOREHEAD_TOP, h * np.sqrt(3) / 2)
    xs = np.arange(-1.0, 1.0, h)
    grid = np.concatenate([np.stack([xs + (i % 2) * h / 2, np.full(len(xs), yv)], 1) for i, yv in enumerate(ys)])
    grid = grid[_point_in_polygon(grid, outline)]
    keep = np.ones(len(grid), bool)
    for pts, radius in ((feature_xy, 0.6 * h), (ring, 0.7 * h)):
        d = np.sqrt(((grid[:, None, :] - pts[None]) ** 2).sum(-1)).min(1)
        keep &= d > radius
    for region in (EYE_R, EYE_L, LIP_OUTER):
        keep &= ~_point_in_polygon(grid, lm[list(region), :2])
    grid = grid[keep]
    xy = np.concatenate([feature_xy, ring, grid])
    verts = np.concatenate([xy, face_depth(xy[:, 0], xy[:, 1])[:, None]], 1)
    verts[:68] = lm
    # triangulate in an open-mouth layout so that no triangle bridges the lips, then drop the mouth hole
    layout = xy.copy()
    layout[:, 1] -= 0.08 * _jaw_weight(verts, lm)
    tri = Delaunay(layout).simplices.astype(np.int64)
    centroids = layout[tri].mean(1)
    in_mouth = _point_in_polygon(centroids, layout[list(LIP_INNER)])
    tri = tri[~in_mouth]
    # consistent orientation: counter-clockwise in (x, y) => normals toward +z (the camera)
    a, b, c = (layout[tri[:, i]] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri[cross < 0] = tri[cross < 0][:, ::-1]
    return verts, tri, _jaw_weight(verts, lm)


# ---------------------------------------------------------------------------------------------
# 4. Expression directions
# ---------------------------------------------------------------------------------------------
def _eye_close_field(v: np.ndarray, lm: np.ndarray, eye: range) -> np.ndarray:
    """Displacement [N, 3] that closes one eye exactly: the lids meet 20 % of the way up from the lower lid.

    Each lid is a parabola over the line between the eye corners, through its two lid landmarks. Vertices
    between the lids collapse onto the meeting curve; above / below, the motion fades within 5 / 3 mm.
    """
    p = lm[list(eye)]
    outer, inner = (p[0], p[3]) if eye.start == 36 else (p[3], p[0])
    cx, hw = (outer[0] + inner[0]) / 2, abs(outer[0] - inner[0]) / 2

    def corner_line(px):
        return outer[1] + (inner[1] - outer[1]) * (px - outer[0]) / (inner[0] - outer[0])

    def profile(px):  # 1 at the middle of the eye, 0 at the corners
        return 1 - ((px - cx) / hw) ** 2

    up_pts, lo_pts = p[[1, 2]], p[[4, 5]]
    h_up = np.mean((up_pts[:, 1] - corner_line(up_pts[:, 0])) / profile(up_pts[:, 0]))
    h_lo = np.mean((corner_line(lo_pts[:, 0]) - lo_pts[:, 1]) / profile(lo_pts[:, 0]))
    x, y = v[:, 0], v[:, 1]
    s = np.clip(profile(x), 0, 1)
    upper, lower = corner_line(x) + h_up * s, corner_line(x) - h_lo * s
    meet = lower + 0.2 * (upper - lower)
    dy = np.where(y > upper, (meet - upper) * np.exp(-(((y - upper) / 0.05) ** 2)),
                  np.where(y < lower, (meet - lower) * np.exp(-(((lower - y) / 0.03) ** 2)), meet - y))
    dy[np.abs(x - cx) >= hw + 1e-9] = 0.0  # nothing moves beyond the eye corners
    out = np.zeros_like(v)
    out[:, 1] = dy
    return out


def _designed_expressions(v: np.ndarray, lm: np.ndarray, jaw_w: np.ndarray) -> list[np.ndarray]:
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax = np.abs(x)
    sx = np.sign(x)
    fields = []

    def field(dx, dy, dz):  # three [N] arrays -> [N, 3]
        return np.stack([dx, dy, dz], 1)

    # jaw_open: infinitesimal rotation about the x axis through the jaw hinge (y 0.20, z -0.75), 0.07 rad
    theta, hinge_y, hinge_z = 0.07, 0.20, -0.75
    fields.append(field(0 * x, -theta * (z - hinge_z) * jaw_w, theta * (y - hinge_y) * jaw_w))
    corners = lm[[48, 54]]
    cw = gauss(ax, y, np.abs(corners[0, 0]), corners[0, 1], 0.09, 0.07)
    fields.append(field(0.05 * sx * cw, 0.04 * cw + 0.015 * gauss(ax, y, 0.32, -0.15, 0.15, 0.15), -0.01 * cw))
    fields.append(field(0.01 * sx * cw, -0.045 * cw, 0 * x))
    fields.append(field(0.06 * sx * cw, 0 * x, -0.01 * cw))
    mouth_c = lm[list(LIP_OUTER)].mean(0)
    mw = gauss(x, y, 0, mouth_c[1], 0.2, 0.12)
    fields.append(field(-0.35 * x * mw, -0.25 * (y - mouth_c[1]) * mw, 0.06 * mw))
    fields.append(field(0 * x, 0.04 * (1 - jaw_w) * gauss(x, y, 0, -0.31, 0.2, 0.06), 0 * x))
    fields.append(field(0 * x, -0.04 * jaw_w * gauss(x, y, 0, -0.45, 0.2, 0.07), 0 * x))
    part = gauss(x, y, 0, -0.36, 0.16, 0.04)
    fields.append(field(0 * x, 0.025 * part * (1 - 2 * jaw_w), 0 * x))
    fields.append(field(0.04 * gauss(x, y, 0, -0.38, 0.3, 0.15), 0 * x, 0 * x))
    fields.append(_eye_close_field(v, lm, EYE_R))
    fields.append(_eye_close_field(v, lm, EYE_L))
    brow_w = np.clip((y - 0.36) / 0.08, 0, 1) * np.exp(-0.5 * (np.clip(y - 0.55, 0, None) / 0.2) ** 2)
    fields.append(field(0 * x, 0.04 * brow_w, 0 * x))
    inner_brow = gauss(ax, y, 0.2, 0.47, 0.1, 0.07)
    fields.append(field(-0.02 * sx * inner_brow, -0.03 * inner_brow, -0.005 * inner_brow))
    fields.append(field(0 * x, 0 * x, 0.05 * gauss(ax, y, 0.40, -0.20, 0.12, 0.12)))
    nw = gauss(ax, y, 0.10, -0.08, 0.08, 0.07)
    fields.append(field(0 * x, 0.025 * nw, 0 * x))
    sq = np.zeros_like(v)
    for eye in (EYE_R, EYE_L):
        close = _eye_close_field(v, lm, eye)
        sq[:, 1] += np.where(close[:, 1] > 0, 0.5 * close[:, 1], 0.0)  # only the part that moves up (lower lid)
    fields.append(sq)
    assert len(fields) == len(EXPRESSION_NAMES)
    return fields


def _mouth_eye_generic(v: np.ndarray, jaw_w: np.ndarray) -> list[np.ndarray]:
    """Generic smooth local fields: monomials around the mouth (upper / lower half) and each eye, per axis."""
    x, y = v[:, 0], v[:, 1]
    out = []
    xr, yr = x / 0.3, (y + 0.4) / 0.25
    mw = gauss(x, y, 0, -0.4, 0.3, 0.25)
    for part in (1 - jaw_w, jaw_w):
        for i, j in ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)):
            for axis in range(3):
                f = np.zeros_like(v)
                f[:, axis] = part * mw * xr**i * yr**j
                out.append(f)
    for cx in (-0.31, 0.31):
        ew = gauss(x, y, cx, 0.32, 0.18, 0.12)
        for i, j in ((0, 0), (1, 0), (0, 1)):
            for axis in range(2):
                f = np.zeros_like(v)
                f[:, axis] = ew * ((x - cx) / 0.18) ** i * ((y - 0.32) / 0.12) ** j
                out.append(f)
    return out


def _orthogonalise(designed: list[np.ndarray], generic: list[np.ndarray], count: int, max_disp: float) -> np.ndarray:
    """Columns [3N, count]: the designed fields as they are, then generic ones Gram-Schmidt-orthogonalised
    against everything before them (in R^{3N}) and scaled so their largest vertex displacement is max_disp."""
    basis = [d.reshape(-1) for d in designed]
    q = [b / np.linalg.norm(b) for b in basis]
    for g in generic:
        if len(basis) == count:
            break
        r = g.reshape(-1).astype(np.float64)
        for _ in range(2):  # twice for numerical safety
            for qi in q:
                r = r - (qi @ r) * qi
        if np.linalg.norm(r) < 1e-6 * max(np.linalg.norm(g), 1e-12):
            continue
        q.append(r / np.linalg.norm(r))
        basis.append(r * (max_disp / np.abs(r).max()))
    assert len(basis) == count, f"only {len(basis)} independent directions for {count}"
    return np.stack(basis, 1)


def _cosine_fields(v: np.ndarray, max_order: int, channels: int) -> list[np.ndarray]:
    x, y = v[:, 0], v[:, 1]
    u, w = (x + 0.85) / 1.7, (y + 0.95) / 1.95
    out = []
    for total in range(1, max_order + 1):
        for kx in range(total + 1):
            ky = total - kx
            c = np.cos(np.pi * kx * u) * np.cos(np.pi * ky * w)
            for ch in range(channels):
                f = np.zeros((len(v), channels))
                f[:, ch] = c
                out.append(f)
    return out


# ---------------------------------------------------------------------------------------------
# 5. Identity directions
# ---------------------------------------------------------------------------------------------
def _designed_identity(v: np.ndarray, lm: np.ndarray) -> list[np.ndarray]:
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax, sx, zero = np.abs(x), np.sign(x), 0 * v[:, 0]
    eye_y = lm[list(EYE_R) + list(EYE_L), 1].mean()

    def f(dx, dy, dz):
        return np.stack([dx, dy, dz], 1)

    lower = 1 / (1 + np.exp(y / 0.15))
    chin = np.clip((-0.45 - y) / 0.25, 0, 1)
    nose_region = gauss(x, y, 0, 0.05, 0.12, 0.2) * (y < 0.3)
    nose_profile = spline(NOSE_KNOTS, y) * np.exp(-0.5 * (x / np.interp(y, [-0.1, 0.3], [0.085, 0.045])) ** 2) / 0.23
    eyes = gauss(ax, y, 0.31, eye_y, 0.15, 0.1)
    eye_local = gauss(ax, y, 0.31, eye_y, 0.1, 0.07)
    mouth = gauss(x, y, 0, -0.38, 0.3, 0.1)
    line = _mouth_line(x, lm)
    return [
        f(0.04 * x, zero, zero),  # face_width
        f(zero, 0.04 * (y - eye_y), zero),  # face_length
        f(zero, zero, 0.05 * z),  # face_depth
        f(0.05 * x * lower, zero, zero),  # jaw_width
        f(zero, -0.04 * chin, zero),  # chin_length
        f(zero, -0.03 * nose_region * np.clip((0.3 - y) / 0.3, 0, 1), zero),  # nose_length
        f(0.25 * x * gauss(x, y, 0, -0.08, 0.15, 0.07), zero, zero),  # nose_width
        f(zero, zero, 0.04 * nose_profile),  # nose_height
        f(0.02 * sx * eyes, zero, zero),  # eye_spacing
        f(0.1 * (ax - 0.31) * sx * eye_local, 0.1 * (y - eye_y) * eye_local, zero),  # eye_size
        f(zero, 0.015 * (ax - 0.31) / 0.15 * eye_local, zero),  # eye_tilt
        f(0.1 * x * mouth, zero, zero),  # mouth_width
        f(zero, 0.15 * (y - line) * gauss(x, y, 0, -0.37, 0.2, 0.1), zero),  # lip_thickness
        f(zero, 0.03 * np.clip((y - 0.38) / 0.08, 0, 1), zero),  # brow_height
        f(zero, 0.05 * np.clip(y - 0.5, 0, None), zero),  # forehead_height
        f(zero, zero, 0.04 * gauss(ax, y, 0.45, -0.1, 0.15, 0.15)),  # cheek_fullness
    ]


# ---------------------------------------------------------------------------------------------
# 6. Texture
# ---------------------------------------------------------------------------------------------
SKIN_RGB, LIP_RGB, BROW_RGB = (200, 158, 135), (170, 92, 92), (95, 72, 60)
EYE_WHITE_RGB, IRIS_RGB = (225, 215, 210), (70, 50, 40)


def _texture(v: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(v)
    xy = v[:, :2]
    tex = np.tile(np.asarray(SKIN_RGB, np.float64), (n, 1))
    lips = _point_in_polygon(xy, lm[list(LIP_OUTER), :2]) | np.isin(np.arange(n), list(LIP_OUTER) + list(LIP_INNER))
    tex[lips] = LIP_RGB
    brow_w = np.zeros(n)
    for brow in (BROW_R, BROW_L):  # distance to the brow polyline (densely resampled)
        b = lm[list(brow), :2]
        t = np.linspace(0, len(b) - 1, 60)
        dense = np.stack([np.interp(t, np.arange(len(b)), b[:, 0]), np.interp(t, np.arange(len(b)), b[:, 1])], 1)
        d = np.sqrt(((xy[:, None] - dense[None]) ** 2).sum(-1)).min(1)
        brow_w = np.maximum(brow_w, np.exp(-0.5 * (d / 0.035) ** 2))
    tex = tex * (1 - brow_w[:, None]) + np.asarray(BROW_RGB) * brow_w[:, None]
    tex[68:70] = IRIS_RGB  # the two eye-centre vertices
    lip_w = lips.astype(np.float64)
    one = np.ones(n)
    designed = [
        np.stack([one, one, one], 1) * 25,  # brightness
        np.stack([one, 0 * one, 0 * one], 1) * 20,  # redness
        np.stack([one, one, -one], 1) * 15,  # yellowness
        np.stack([lip_w, -0.5 * lip_w, -0.5 * lip_w], 1) * 25,  # lip_colour
        -np.stack([brow_w] * 3, 1) * 40,  # brow_darkness
    ]
    generic = [g * GENERIC_TEX_AMPLITUDE for g in _cosine_fields(v, 8, 3)]
    basis = designed + generic[: TEX_DIM - len(designed)]
    return tex.reshape(-1), np.stack([b.reshape(-1) for b in basis], 1)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def build_default_arrays() -> dict[str, np.ndarray]:
    """All arrays of the stand-in (deterministic; built once per process, ~0.2 s)."""
    verts, faces, jaw_w = _build_mesh()
    lm = verts[:68]
    exp_generic = _mouth_eye_generic(verts, jaw_w) + _cosine_fields(verts, 6, 3)
    exp_base = _orthogonalise(_designed_expressions(verts, lm, jaw_w), exp_generic, EXP_DIM, GENERIC_EXP_MAX)
    id_base = _orthogonalise(_designed_identity(verts, lm), _cosine_fields(verts, 8, 3), ID_DIM, GENERIC_ID_MAX)
    mean_tex, tex_base = _texture(verts, lm)
    arrays = {
        "mean_shape": verts.astype(np.float32),
        "id_base": id_base.astype(np.float32),
        "exp_base": exp_base.astype(np.float32),
        "mean_tex": mean_tex.astype(np.float32),
        "tex_base": tex_base.astype(np.float32),
        "faces": faces,
        "keypoints": np.arange(68, dtype=np.int64),
    }
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


class DefaultMorphableModel(MorphableModel):
    """The offline stand-in face model (NOT the Basel Face Model; see the module docstring).

    Same interface as a BFM-backed :class:`MorphableModel`: 80 identity, 64 expression, 80 texture
    coefficients, 27 SH lighting coefficients, the official camera and 68 landmarks. The first expression
    coefficients are named (``EXPRESSION_NAMES``; ``expression_index("blink_left")``), as are the first
    identity (``IDENTITY_NAMES``) and texture (``TEXTURE_NAMES``) coefficients.
    """

    expression_names = EXPRESSION_NAMES
    identity_names = IDENTITY_NAMES
    texture_names = TEXTURE_NAMES

    def __init__(self, camera: PerspectiveCamera = PerspectiveCamera()):
        a = build_default_arrays()
        super().__init__(
            mean_shape=a["mean_shape"], id_base=a["id_base"], exp_base=a["exp_base"], mean_tex=a["mean_tex"],
            tex_base=a["tex_base"], faces=a["faces"], keypoints=a["keypoints"], camera=camera,
            name="DefaultMorphableModel (stand-in, not the BFM)",
        )

    @staticmethod
    def expression_index(name: str) -> int:
        """Column of a designed expression direction, e.g. ``"jaw_open"`` -> 0."""
        if name not in EXPRESSION_NAMES:
            raise KeyError(f"unknown expression {name!r}; designed ones: {', '.join(EXPRESSION_NAMES)}")
        return EXPRESSION_NAMES.index(name)

    @staticmethod
    def identity_index(name: str) -> int:
        if name not in IDENTITY_NAMES:
            raise KeyError(f"unknown identity direction {name!r}; designed ones: {', '.join(IDENTITY_NAMES)}")
        return IDENTITY_NAMES.index(name)
