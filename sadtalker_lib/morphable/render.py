"""Projection and pictures of the face model: the R_d of paper Fig. 3, the eye aspect ratio, a CPU rasteriser.

* :func:`project_landmarks` -- differentiable: coefficients (70 / 73 / 257 layout) -> the 68 projected
  landmarks, what ExpNet's landmark and eye losses (supp. Eq. 4-8) look at.
* :func:`eye_aspect_ratio` -- R_t = E^h / E^w of supp. Eq. 4-6; :func:`mouth_opening` -- the inner-lip gap.
* :func:`rasterize` -- a z-buffer triangle rasteriser in numpy (vectorised, no GPU, no compiled extension),
  and on top of it :func:`render_mesh` (shaded / coloured face, optionally over a photo),
  :func:`draw_wireframe`, :func:`draw_landmarks` and :func:`fit_figure` (matplotlib).

Pixel conventions: the model projects to (u, v) with v pointing UP in a ``camera.image_size`` square (224);
pictures use (x, row) with rows pointing down, row = size - 1 - v (``official_image_rows``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..landmarks import EYE_CORNERS, INNER_LIP_PAIRS, INNER_MOUTH_CORNERS
from ..coeffs import ANGLE, COEFF_257_SLICES, EXP, EXP_DIM, FULL_DIM, ID_DIM, MOTION_DIM, TRANS
from .model import MorphableModel, official_image_rows

__all__ = [
    "project_landmarks",
    "to_image_rows",
    "eye_aspect_ratio",
    "mouth_opening",
    "mouth_width",
    "Raster",
    "rasterize",
    "vertex_pixels",
    "render_mesh",
    "draw_wireframe",
    "draw_landmarks",
    "fit_figure",
    "with_changes",
    "explorer",
]

# iBUG-68 indices of supp. Eq. 4-6 (0-based: P^36 is the right eye's outer corner, ...)
EYE_WIDTH_PAIRS = ((39, 36), (45, 42))  # Eq. 4: ||P39 - P36|| and ||P45 - P42||
EYE_HEIGHT_QUADS = ((37, 38, 40, 41), (43, 44, 46, 47))  # Eq. 5-6: ||P37 + P38 - P40 - P41|| / 2, ...
# landmark polylines for drawing (jaw, brows, nose, eyes, lips); True = closed
LANDMARK_GROUPS = (
    (range(0, 17), False), (range(17, 22), False), (range(22, 27), False), (range(27, 31), False),
    (range(30, 36), False), (range(36, 42), True), (range(42, 48), True), (range(48, 60), True), (range(60, 68), True),
)


# ---------------------------------------------------------------------------------------------
# Differentiable projection (R_d) and the eye aspect ratio
# ---------------------------------------------------------------------------------------------
def _split_motion(coeffs: torch.Tensor):
    """exp, angle, trans, id (or None) from [..., 70 | 73 | 257]."""
    n = coeffs.shape[-1]
    if n in (MOTION_DIM, FULL_DIM):
        return coeffs[..., EXP], coeffs[..., ANGLE], coeffs[..., TRANS], None
    if n == 257:
        s = COEFF_257_SLICES
        return coeffs[..., s["exp"]], coeffs[..., s["angle"]], coeffs[..., s["trans"]], coeffs[..., s["id"]]
    raise ValueError(f"coefficients must have 70, 73 or 257 values in the last axis, got {n}")


def project_landmarks(
    model: MorphableModel, coeffs: torch.Tensor, id_coeff: torch.Tensor | None = None, *, image_rows: bool = False
) -> torch.Tensor:
    """R_d: coefficients [..., 70 | 73 | 257] -> landmarks [..., 68, 2] in pixels of the camera image (224).

    ``id_coeff`` [..., 80] (or broadcastable, e.g. [B, 1, 80] for a clip) overrides / supplies the identity;
    70 / 73 layouts without it use alpha = 0. v points up unless ``image_rows`` (then (x, row)).
    Differentiable in ``coeffs`` and ``id_coeff``.
    """
    exp, angle, trans, ident = _split_motion(coeffs)
    if id_coeff is not None:
        ident = id_coeff
    lead = exp.shape[:-1]
    if ident is None:
        ident = exp.new_zeros(*lead, ID_DIM)
    ident = ident.expand(*lead, ID_DIM)
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    lm = model.project_landmarks(flat(ident), flat(exp), flat(angle), flat(trans)).reshape(*lead, -1, 2)
    return to_image_rows(lm, model.camera.image_size) if image_rows else lm


def to_image_rows(points, image_size: int = 224):
    """(u, v-up) -> (x, row) for torch tensors or numpy arrays [..., 2] (its own inverse)."""
    if isinstance(points, torch.Tensor):
        return torch.stack([points[..., 0], official_image_rows(points[..., 1], image_size)], -1)
    points = np.asarray(points)
    return np.stack([points[..., 0], official_image_rows(points[..., 1], image_size)], -1)


def _norm_of(landmarks):
    """The last-axis Euclidean norm for ``landmarks``' library (torch or numpy)."""
    if isinstance(landmarks, torch.Tensor):
        return lambda t: torch.linalg.vector_norm(t, dim=-1)
    return lambda t: np.linalg.norm(t, axis=-1)


def eye_aspect_ratio(landmarks):
    """Supp. Eq. 4-6: R = E^h / E^w from landmarks [..., 68, 2] (torch or numpy) -> [...].

    E^w = (||P39 - P36|| + ||P45 - P42||) / 2 and E^h = ||P37 + P38 - P40 - P41|| / 2 + ||P43 + P44 - P46 - P47|| / 2,
    as printed (so E^h sums the mean lid distances of the two eyes; an open eye gives R of about 0.5-0.7 and a
    closed one 0). Works on either y convention.
    """
    norm = _norm_of(landmarks)
    p = landmarks
    width = sum(norm(p[..., a, :] - p[..., b, :]) for a, b in EYE_WIDTH_PAIRS) / 2
    height = sum(norm(p[..., a, :] + p[..., b, :] - p[..., c, :] - p[..., d, :]) / 2 for a, b, c, d in EYE_HEIGHT_QUADS)
    return height / width


MOUTH_GAP_PAIR = INNER_LIP_PAIRS[1]  # inner upper / lower lip midpoints (62, 66)


def _over_eye_corners(landmarks, pair: tuple[int, int]):
    """||P[pair[0]] - P[pair[1]]|| / ||P45 - P36|| of landmarks [..., 68, 2] -> [...]."""
    norm, p = _norm_of(landmarks), landmarks
    return norm(p[..., pair[0], :] - p[..., pair[1], :]) / norm(p[..., EYE_CORNERS[1], :] - p[..., EYE_CORNERS[0], :])


def mouth_opening(landmarks):
    """Inner-lip gap over the outer-eye-corner distance: ||P62 - P66|| / ||P45 - P36||, landmarks [..., 68, 2]
    (torch or numpy) -> [...]. Scale-free (0 = closed lips; about 0.3 for a wide-open mouth)."""
    return _over_eye_corners(landmarks, MOUTH_GAP_PAIR)


def mouth_width(landmarks):
    """Inner-lip corner distance over the outer-eye-corner distance: ||P60 - P64|| / ||P45 - P36||, landmarks
    [..., 68, 2] (torch or numpy) -> [...]; the horizontal partner of :func:`mouth_opening`."""
    return _over_eye_corners(landmarks, INNER_MOUTH_CORNERS)


# ---------------------------------------------------------------------------------------------
# Rasteriser
# ---------------------------------------------------------------------------------------------
@dataclass
class Raster:
    """Per pixel: ``face`` [H, W] int64 (-1 = background), ``bary`` [H, W, 3] barycentric weights of its
    vertices, ``depth`` [H, W] (inf on background; smaller = closer)."""

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0

    def interpolate(self, values: np.ndarray, faces: np.ndarray, background=0.0) -> np.ndarray:
        """Per-vertex values [N, C] -> image [H, W, C] (background where no face)."""
        values = np.asarray(values, np.float64)
        h, w = self.face.shape
        out = np.full((h, w, values.shape[1]), background, np.float64)
        m = self.mask
        tri = faces[self.face[m]]  # [P, 3]
        out[m] = (values[tri] * self.bary[m][..., None]).sum(1)
        return out


def rasterize(points: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int,
              chunk: int = 4096) -> Raster:
    """Z-buffer rasterisation of triangles: points [N, 2] (x, row) in pixels (pixel centres at integers),
    depth [N] (smaller = closer), faces [F, 3] -> :class:`Raster`. Fully vectorised per chunk of faces."""
    pts = np.asarray(points, np.float64)
    z = np.asarray(depth, np.float64)
    faces = np.asarray(faces, np.int64)
    best_depth = np.full(height * width, np.inf)
    best_face = np.full(height * width, -1, np.int64)
    best_bary = np.zeros((height * width, 3))
    for start in range(0, len(faces), chunk):
        f_ids = np.arange(start, min(start + chunk, len(faces)))
        tri = pts[faces[f_ids]]  # [C, 3, 2]
        lo = np.clip(np.ceil(tri.min(1)), 0, [width, height]).astype(np.int64)  # [C, 2]
        hi = np.clip(np.floor(tri.max(1)), -1, [width - 1, height - 1]).astype(np.int64)
        bw, bh = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
        valid = (bw > 0) & (bh > 0) & np.isfinite(tri).all((1, 2))
        if not valid.any():
            continue
        f_ids, tri, lo, bw, bh = f_ids[valid], tri[valid], lo[valid], bw[valid], bh[valid]
        counts = bw * bh
        owner = np.repeat(np.arange(len(f_ids)), counts)  # candidate pixel -> face (within the chunk)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        px = lo[owner, 0] + offset % bw[owner]
        py = lo[owner, 1] + offset // bw[owner]
        a, b, c = tri[owner, 0], tri[owner, 1], tri[owner, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        ok = np.abs(area) > 1e-12
        area = np.where(ok, area, 1.0)
        w0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) / area
        w1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) / area
        w2 = 1.0 - w0 - w1
        inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        if not inside.any():
            continue
        fid = f_ids[owner[inside]]
        bary = np.stack([w0, w1, w2], 1)[inside]
        d = (z[faces[fid]] * bary).sum(1)
        pix = py[inside] * width + px[inside]
        order = np.lexsort((d, pix))  # by pixel, nearest first
        pix, d, fid, bary = pix[order], d[order], fid[order], bary[order]
        first = np.concatenate([[True], pix[1:] != pix[:-1]])
        pix, d, fid, bary = pix[first], d[first], fid[first], bary[first]
        closer = d < best_depth[pix]
        pix = pix[closer]
        best_depth[pix], best_face[pix], best_bary[pix] = d[closer], fid[closer], bary[closer]
    return Raster(best_face.reshape(height, width), best_bary.reshape(height, width, 3),
                  best_depth.reshape(height, width))


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------
def _single(coeffs) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(coeffs, np.float32) if not isinstance(coeffs, torch.Tensor) else coeffs).float()
    if c.ndim == 1:
        c = c[None]
    if c.shape != (1, 257):
        raise ValueError(f"expected one set of 257 coefficients ([257] or [1, 257]), got {tuple(c.shape)}")
    return c


@torch.no_grad()
def vertex_pixels(model: MorphableModel, coeffs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One coefficient vector [257] -> vertex pixels [N, 2] (x, row) in the camera image, camera depth [N],
    rotated normals [N, 3] and SH colours [N, 3] (unclamped)."""
    c = _single(coeffs).to(model.mean_shape)
    vertex, _, color, _ = model.compute_for_render(c)
    uv = model.to_image(vertex)[0].cpu().numpy()
    d = {k: c[:, s] for k, s in COEFF_257_SLICES.items()}
    normals = (model.compute_norm(model.compute_shape(d["id"], d["exp"])) @ model.compute_rotation(d["angle"]))[0]
    return (to_image_rows(uv, model.camera.image_size), vertex[0, :, 2].cpu().numpy(), normals.cpu().numpy(),
            color[0].cpu().numpy())


def render_mesh(
    model: MorphableModel,
    coeffs,
    image: np.ndarray | None = None,
    *,
    mode: str = "shaded",
    alpha: float = 0.75,
    base_color=(0.80, 0.78, 0.75),
    transform=None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Rasterise the face of one coefficient vector [257] -> uint8 RGB [H, W, 3].

    mode: "shaded" (grey clay, Lambert light from the camera), "color" (the model's SH-lit albedo),
    "normals" (normal map). ``image``: blend over this photo (its size sets H, W; else ``size`` or the
    camera's 224 square, black background). ``transform``: maps the [N, 2] (x, row) camera-image pixels to
    the photo's pixels, e.g. ``lambda p: fit.crop_to_image(p, trans_params)`` to draw on the original photo.
    """
    pts, depth, normals, color = vertex_pixels(model, coeffs)
    if transform is not None:
        pts = np.asarray(transform(pts), np.float64)
    if image is not None:
        canvas = np.asarray(image)
        if canvas.ndim != 3 or canvas.shape[2] != 3:
            raise ValueError(f"image must be RGB [H, W, 3], got {canvas.shape}")
        h, w = canvas.shape[:2]
    else:
        h, w = size if size is not None else (model.camera.image_size,) * 2
        canvas = np.zeros((h, w, 3), np.uint8)
    faces = model.faces.cpu().numpy()
    r = rasterize(pts, depth, faces, h, w)
    if mode == "shaded":
        light = np.array([0.3, 0.3, 1.0]) / np.linalg.norm([0.3, 0.3, 1.0])  # from the camera side, up-right
        lam = np.clip(normals @ light, 0, 1)[:, None]
        vals = (0.25 + 0.75 * lam) * np.asarray(base_color)[None]
    elif mode == "color":
        vals = np.clip(color, 0, 1)
    elif mode == "normals":
        vals = (normals + 1) / 2
    else:
        raise ValueError(f"mode must be 'shaded', 'color' or 'normals', got {mode!r}")
    rgb = r.interpolate(vals, faces)
    m = r.mask[..., None]
    a = alpha if image is not None else 1.0
    out = canvas.astype(np.float64) / 255 * (1 - m * a) + rgb * m * a
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def draw_wireframe(image: np.ndarray, points: np.ndarray, faces: np.ndarray, color=(40, 220, 90), thickness: int = 1,
                   depth: np.ndarray | None = None) -> np.ndarray:
    """Mesh edges over a copy of ``image`` (uint8 RGB): points [N, 2] (x, row), faces [F, 3].

    With ``depth`` [N] (smaller = closer) only edges of triangles facing the camera are drawn.
    """
    import cv2

    out = np.ascontiguousarray(np.asarray(image, np.uint8).copy())
    pts = np.asarray(points, np.float64)
    faces = np.asarray(faces, np.int64)
    if depth is not None:  # keep front-facing triangles (counter-clockwise on screen with rows down = cw)
        a, b, c = pts[faces[:, 0]], pts[faces[:, 1]], pts[faces[:, 2]]
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        faces = faces[cross < 0]
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    shift = 4  # sub-pixel precision for cv2
    lines = np.rint(pts[edges] * (1 << shift)).astype(np.int32)  # [E, 2, 2]
    cv2.polylines(out, list(lines), False, tuple(int(v) for v in color), thickness, cv2.LINE_AA, shift)
    return out


def draw_landmarks(image: np.ndarray, points: np.ndarray, color=(255, 60, 60), radius: int = 2,
                   connect: bool = True) -> np.ndarray:
    """68 landmarks [68, 2] (x, row) as dots (and iBUG polylines) over a copy of ``image``."""
    import cv2

    out = np.ascontiguousarray(np.asarray(image, np.uint8).copy())
    pts = np.asarray(points, np.float64)
    col = tuple(int(v) for v in color)
    shift = 4
    ip = np.rint(pts * (1 << shift)).astype(np.int32)
    if connect and len(pts) == 68:
        for idx, closed in LANDMARK_GROUPS:
            cv2.polylines(out, [ip[list(idx)]], closed, col, 1, cv2.LINE_AA, shift)
    for p in ip:
        cv2.circle(out, (int(p[0]), int(p[1])), radius << shift, col, -1, cv2.LINE_AA, shift)
    return out


def fit_figure(result, index: int = 0, model: MorphableModel | None = None, figsize=(13, 3.6)):
    """Matplotlib figure for a ``fit.FitResult``: crop with target (red) and fitted (green) landmarks, the
    mesh overlay, the wireframe, and the landmark error per iteration."""
    import matplotlib.pyplot as plt

    from .fit import default_model

    model = model or default_model()
    side = model.camera.image_size
    crop = result.crops[index] if result.crops is not None else np.zeros((side, side, 3), np.uint8)
    fig, ax = plt.subplots(1, 4, figsize=figsize)
    lm_img = draw_landmarks(draw_landmarks(crop, result.target[index], (255, 60, 60)), result.landmarks[index],
                            (60, 220, 60))
    ax[0].imshow(lm_img)
    ax[0].set_title(f"landmarks: target (red) / fit (green)\nmean error {result.error_px[index]:.2f} px")
    ax[1].imshow(render_mesh(model, result.coeffs_257[index], crop, alpha=0.6))
    ax[1].set_title("mesh overlay")
    pts, depth, _, _ = vertex_pixels(model, result.coeffs_257[index])
    ax[2].imshow(draw_wireframe(crop, pts, model.faces.cpu().numpy(), depth=depth))
    ax[2].set_title("wireframe")
    for a in ax[:3]:
        a.axis("off")
    ax[3].plot(np.arange(1, len(result.history_px) + 1), result.history_px)
    ax[3].set_yscale("log")
    ax[3].set_xlabel("iteration")
    ax[3].set_ylabel("mean landmark error (px at 224)")
    ax[3].grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Interactive exploration (notebooks)
# ---------------------------------------------------------------------------------------------
def with_changes(coeffs, *, exp: dict[int, float] | None = None, angle_deg=None) -> np.ndarray:
    """A copy of one 257 vector with some expression coefficients set ({column: value}) and, optionally,
    the rotation replaced by (pitch, yaw, roll) in degrees."""
    c = _single(coeffs)[0].detach().cpu().numpy().copy()
    for col, value in (exp or {}).items():
        c[COEFF_257_SLICES["exp"].start + int(col)] = value
    if angle_deg is not None:
        c[COEFF_257_SLICES["angle"]] = np.deg2rad(np.asarray(angle_deg, np.float32))
    return c


def explorer(model: MorphableModel, coeffs, image: np.ndarray | None = None, names=None):
    """ipywidgets sliders that move one expression coefficient and the three angles of ``coeffs`` [257] and
    redraw the face (over ``image``, e.g. the 224 crop, when given). ``names``: labels of the first
    expression columns (the stand-in's ``EXPRESSION_NAMES`` by default when the model has them).
    Returns (widget, draw) where ``draw(column, value, pitch, yaw, roll)`` -> uint8 image also works headless."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    base = _single(coeffs)[0].detach().cpu().numpy()
    names = list(names if names is not None else getattr(model, "expression_names", ()))
    options = [(f"{i}: {names[i]}" if i < len(names) else f"{i}: generic", i) for i in range(EXP_DIM)]
    start = np.rad2deg(base[COEFF_257_SLICES["angle"]])
    start_exp = base[COEFF_257_SLICES["exp"]]

    def draw(column: int, value: float, pitch: float, yaw: float, roll: float) -> np.ndarray:
        c = with_changes(base, exp={column: value}, angle_deg=(pitch, yaw, roll))
        return render_mesh(model, c, image, alpha=0.8)

    out = widgets.Output()

    def update(column, value, pitch, yaw, roll):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.imshow(draw(column, value, pitch, yaw, roll))
            ax.set_title(f"exp[{column}] = {value:+.2f}")
            ax.axis("off")
            plt.show()

    column = widgets.Dropdown(options=options, value=0, description="expression")
    value = widgets.FloatSlider(value=float(start_exp[0]), min=-3, max=3, step=0.05, description="value")
    column.observe(lambda ch: setattr(value, "value", float(start_exp[ch["new"]])), names="value")
    sliders = {k: widgets.FloatSlider(value=float(v), min=-45, max=45, step=1, description=f"{k} (deg)")
               for k, v in zip(("pitch", "yaw", "roll"), start)}
    ui = widgets.VBox([column, value, *sliders.values()])
    widgets.interactive_output(update, {"column": column, "value": value, **sliders})
    return widgets.HBox([ui, out]), draw
