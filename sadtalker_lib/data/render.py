"""Frames for the default corpus: a real portrait animated by coefficients, without any neural network.

The 68 landmarks of the portrait are moved by the coefficients: the project's morphable model
(``DefaultMorphableModel``) projects its landmarks for the frame's [exp 64, angle 3, trans 3] and for the neutral
coefficients, and the difference, scaled from the model's 224 px camera to the portrait by the eye distance, is
added to the portrait's landmarks. A piecewise-affine warp over a fixed triangulation (landmarks + a ring
around the head that follows the head's similarity transform + the fixed image border) carries the pixels
along, and the open mouth is painted as a dark cavity with an upper-teeth band. So the frames, the landmarks
stored with them and the coefficients agree in the sense of the morphable model used by fitting and by the
landmark losses. What this stands in for: a real corpus (VoxCeleb, HDTF) of talking-face videos.

The portrait's own mouth is closed first (``close_mouth``): the rest pose of the animation is closed lips, as
the model's neutral face, and only the coefficients open it. Head pose conventions are the official ones
(``morphable.model``): positive pitch tilts the chin down, positive yaw turns the nose towards the image's
right, positive roll turns the face counter-clockwise on screen; tx right, ty up, tz towards the camera.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..coeffs import ANGLE, EXP, MOTION_DIM, POSE, TRANS
from ..morphable.render import to_image_rows

__all__ = ["Portrait", "load_portrait", "default_portrait", "PortraitAnimator", "model_landmarks"]

# landmarks that move rigidly with the head (jaw line, nose, eye corners): they define the ring's similarity
RIGID = np.r_[np.arange(0, 17), np.arange(27, 36), [36, 39, 42, 45]]


def _default_model():
    from ..morphable.fit import default_model  # the shared stand-in, built once per process

    return default_model()


def model_landmarks(coeffs: np.ndarray, model=None) -> np.ndarray:
    """Landmarks of the morphable model (identity 0) for coefficients [T, 70]: float32 [T, 68, 2], 224 px, y down."""
    import torch

    model = model or _default_model()
    c = torch.as_tensor(np.asarray(coeffs, np.float32).reshape(-1, MOTION_DIM))
    with torch.no_grad():
        lm = model.project_landmarks(torch.zeros(len(c), model.id_base.shape[1]), c[:, EXP], c[:, ANGLE], c[:, TRANS])
    return to_image_rows(lm.numpy(), model.camera.image_size).astype(np.float32)  # v points up; rows point down


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity [2, 3] taking src [N, 2] to dst [N, 2] (Umeyama, no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, d]) @ vt
    scale = (sig * [1.0, d]).sum() / max((a ** 2).sum(), 1e-12)
    return np.concatenate([scale * r, (md - scale * r @ ms)[:, None]], 1)


# iBUG-68 index groups
UPPER_INNER, LOWER_INNER = np.array([61, 62, 63]), np.array([65, 66, 67])
INNER_MOUTH = np.arange(60, 68)


@dataclass
class Portrait:
    """A face picture to animate: ``image`` uint8 [S, S, 3] and its ``landmarks`` float32 [68, 2] (x, y px)."""

    image: np.ndarray
    landmarks: np.ndarray
    name: str = "portrait"


def load_portrait(image=None, size: int = 128, name: str | None = None, detector=None,
                  landmarks: np.ndarray | None = None, face_fraction: float = 0.5) -> Portrait:
    """Crop a square around the face of ``image`` (path / array; None: skimage's astronaut) at ``size`` px.

    Landmarks come from ``landmarks`` when given, else from the dlib detector (``sadtalker_lib.face.detect``).
    ``face_fraction``: width of the landmark box over the crop width.
    """
    from ..face.detect import default_detector, load_image

    if image is None:
        import skimage.data

        image, name = skimage.data.astronaut(), name or "astronaut"
    img = load_image(image)
    lm = np.asarray(landmarks if landmarks is not None else (detector or default_detector()).landmarks(img),
                    np.float64)
    lo, hi = lm.min(0), lm.max(0)
    side = max(hi[0] - lo[0], 0.8 * (hi[1] - lo[1])) / face_fraction
    cx, cy = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 - 0.06 * side  # a little headroom for the forehead
    scale = size / side
    m = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])
    crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    lm_crop = lm @ m[:, :2].T + m[:, 2]
    return Portrait(image=crop, landmarks=lm_crop.astype(np.float32), name=name or "portrait")


@functools.lru_cache(maxsize=8)
def default_portrait(size: int = 128) -> Portrait:
    """skimage's astronaut (Eileen Collins, public domain) cropped around the face; cached per size."""
    return load_portrait(None, size=size, name="astronaut")


class PortraitAnimator:
    """Animate one portrait with coefficients in the official layout [exp 64, angle 3, trans 3] (``[70]``).

    ``render(coeffs)`` -> (frame uint8 [S, S, 3], landmarks float32 [68, 2]); ``render_sequence`` for [T, 70].
    ``model``: the morphable model whose landmark motion drives the portrait (default DefaultMorphableModel).
    """

    def __init__(self, portrait: Portrait, model=None, close_mouth: bool = True, n_ring: int = 16,
                 cavity_colour=(45, 18, 22), teeth_colour=(225, 222, 212)):
        self.portrait = portrait
        self.model = model or _default_model()
        self.image = np.ascontiguousarray(portrait.image)
        self.size = self.image.shape[0]
        lm = portrait.landmarks.astype(np.float64)
        self.eye_dist = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
        self.neutral_model = model_landmarks(np.zeros((1, 70)), self.model)[0].astype(np.float64)
        model_eye = np.linalg.norm(self.neutral_model[36:42].mean(0) - self.neutral_model[42:48].mean(0))
        self.px_per_model_px = self.eye_dist / model_eye
        self.rest = lm.copy()  # the landmarks of the neutral frame
        if close_mouth:
            self.rest = _closed_mouth(lm)
        lo, hi = lm.min(0), lm.max(0)
        center = lm.mean(0)
        a = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
        rx, ry = 0.75 * (hi[0] - lo[0]), 0.9 * (hi[1] - lo[1])
        ring = np.stack([center[0] + rx * np.cos(a), center[1] - 0.1 * ry + ry * np.sin(a)], 1)
        self.ring = np.clip(ring, 2, self.size - 3)
        self.ring_weight = np.where(np.sin(a) > 0.3, 0.5, 1.0)[:, None]  # below the centre (the neck): half-way
        e = self.size - 1
        k = np.linspace(0, e, 5)
        border = [(x, 0) for x in k] + [(x, e) for x in k] + [(0, y) for y in k[1:-1]] + [(e, y) for y in k[1:-1]]
        self.border = np.array(border, np.float64)
        self.source_points = np.concatenate([lm, self.ring, self.border])
        self.triangles = Delaunay(self.source_points).simplices
        self.cavity_colour = np.array(cavity_colour, np.float32)
        self.teeth_colour = np.array(teeth_colour, np.float32)
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        self._grid = np.stack([xx, yy, np.ones_like(xx)], -1)  # [S, S, 3] homogeneous pixel coordinates

    # ---- landmarks ----
    def landmarks(self, coeffs: np.ndarray) -> np.ndarray:
        """Landmarks of the animated portrait: ``float32 [T, 68, 2]`` for coeffs [T, 70] ([68, 2] for [70])."""
        coeffs = np.asarray(coeffs, np.float64)
        self._check(coeffs)
        delta = model_landmarks(coeffs.reshape(-1, 70), self.model) - self.neutral_model  # [T, 68, 2] model px
        out = (self.rest[None] + self.px_per_model_px * delta).astype(np.float32)
        return out[0] if coeffs.ndim == 1 else out

    def _target_points(self, lm: np.ndarray) -> np.ndarray:
        """All warp points for one frame's landmarks [68, 2]: landmarks, the ring (moved with the head), border."""
        m = _similarity(self.rest[RIGID], lm[RIGID].astype(np.float64))
        ring = self.ring_weight * (self.ring @ m[:, :2].T + m[:, 2]) + (1 - self.ring_weight) * self.ring
        return np.concatenate([lm, ring, self.border])

    @staticmethod
    def _check(coeffs: np.ndarray) -> None:
        if coeffs.shape[-1] != MOTION_DIM:
            raise ValueError(f"coefficients must be [70] = [exp 64, angle 3, trans 3], got shape {coeffs.shape}")
        if not np.isfinite(coeffs).all():
            raise ValueError("coefficients contain NaN or inf")

    # ---- pixels ----
    def _warp(self, target: np.ndarray) -> np.ndarray:
        """Piecewise-affine warp: every target triangle samples its source triangle (one cv2.remap)."""
        tri_t = target[self.triangles]  # [K, 3, 2]
        tri_s = self.source_points[self.triangles]
        a = np.concatenate([tri_t, np.ones(tri_t.shape[:2] + (1,))], -1)  # [K, 3, 3]
        maps = np.linalg.pinv(a) @ tri_s  # [K, 3, 2]: [x, y, 1] @ maps -> source (x, y)
        label = np.zeros((self.size, self.size), np.int32)
        for k, t in enumerate(tri_t):  # later triangles win on shared edges (the map is continuous there)
            cv2.fillConvexPoly(label, np.round(t).astype(np.int32), k + 1)
        m = np.concatenate([np.zeros((1, 3, 2)), maps]).astype(np.float32)[label]  # [S, S, 3, 2]
        src = np.einsum("hwi,hwij->hwj", self._grid, m)
        uncovered = label == 0
        src[uncovered] = self._grid[uncovered][:, :2]
        return cv2.remap(self.image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def warp_to(self, landmarks: np.ndarray) -> np.ndarray:
        """The portrait image uint8 [S, S, 3] warped so that its landmarks move to ``landmarks`` [68, 2] (x, row);
        the ring follows the head, the border stays, no mouth is painted (used to make identity variants)."""
        return self._warp(self._target_points(np.asarray(landmarks, np.float64)))

    def mouth_opening(self, coeffs: np.ndarray) -> np.ndarray:
        """Inner-lip gap in portrait pixels, ``float32 [T]``, from the expression alone (pose does not open it)."""
        c = np.array(coeffs, np.float64).reshape(-1, MOTION_DIM)
        c[:, POSE] = 0.0
        lm = model_landmarks(c, self.model)
        gap = (lm[:, LOWER_INNER[::-1], 1] - lm[:, UPPER_INNER, 1]).mean(1)
        neutral = (self.neutral_model[LOWER_INNER[::-1], 1] - self.neutral_model[UPPER_INNER, 1]).mean()
        return (self.px_per_model_px * (gap - neutral)).astype(np.float32)

    def _paint_mouth(self, frame: np.ndarray, lm: np.ndarray, opening: float) -> np.ndarray:
        """Dark cavity inside the inner lips when the mouth opens, with an upper-teeth band."""
        alpha = float(np.clip((opening - 0.02 * self.eye_dist) / (0.1 * self.eye_dist), 0.0, 1.0))
        if alpha <= 0.0:
            return frame
        gap = max(float(np.mean(lm[LOWER_INNER[::-1], 1] - lm[UPPER_INNER, 1])), 0.0)
        ss = 4  # draw at 4x and blur for anti-aliased edges
        mouth = np.zeros((self.size * ss, self.size * ss), np.uint8)
        cv2.fillPoly(mouth, [np.round(lm[INNER_MOUTH] * ss).astype(np.int32)], 255, cv2.LINE_AA)
        teeth = np.zeros_like(mouth)
        band = min(0.3 * gap, 0.12 * self.eye_dist)
        upper = lm[[60, 61, 62, 63, 64]]
        poly = np.concatenate([upper, upper[::-1] + [0, band]])
        cv2.fillPoly(teeth, [np.round(poly * ss).astype(np.int32)], 255, cv2.LINE_AA)
        mouth = cv2.resize(mouth, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        teeth = cv2.resize(teeth, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        teeth = np.minimum(teeth, mouth)
        out = frame.astype(np.float32)
        colour = self.cavity_colour * (1 - teeth[..., None]) + self.teeth_colour * teeth[..., None]
        w = (alpha * 0.9 * mouth)[..., None]
        out = out * (1 - w) + colour * w
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _frame(self, lm: np.ndarray, opening: float) -> np.ndarray:
        return self._paint_mouth(self._warp(self._target_points(lm)), lm, opening)

    def render(self, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame: (uint8 [S, S, 3], landmarks float32 [68, 2]) for coefficients [70]."""
        coeffs = np.asarray(coeffs, np.float64)
        if coeffs.shape != (70,):
            raise ValueError(f"render expects coefficients [70] (use render_sequence for [T, 70]), got {coeffs.shape}")
        lm = self.landmarks(coeffs)
        return self._frame(lm.astype(np.float64), float(self.mouth_opening(coeffs)[0])), lm

    def render_sequence(self, coeffs: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Frames uint8 [T, S, S, 3] and landmarks float32 [T, 68, 2] for coefficients [T, 70]."""
        coeffs = np.asarray(coeffs, np.float64)
        if coeffs.ndim != 2:
            raise ValueError(f"render_sequence expects coefficients [T, 70], got shape {coeffs.shape}")
        lms = self.landmarks(coeffs)
        opening = self.mouth_opening(coeffs)
        frames = np.empty((len(coeffs), self.size, self.size, 3), np.uint8)
        it = range(len(coeffs))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="render", leave=False)
        for t in it:
            frames[t] = self._frame(lms[t].astype(np.float64), float(opening[t]))
        return frames, lms


def _closed_mouth(lm: np.ndarray) -> np.ndarray:
    """Landmarks with the inner lips brought together (the outer lips follow): the rest pose of the animation."""
    out = lm.copy()
    for up, lo, o_up, o_lo in ((61, 67, 50, 58), (62, 66, 51, 57), (63, 65, 52, 56)):
        gap = lm[lo, 1] - lm[up, 1]
        if gap <= 0:
            continue
        mid = (lm[lo, 1] + lm[up, 1]) / 2
        out[up, 1], out[lo, 1] = mid, mid
        out[o_up, 1] += gap / 2
        out[o_lo, 1] -= gap / 2
    for up, lo in ((49, 59), (53, 55)):  # the outer lips next to the corners move a little less
        gap = max(lm[67, 1] - lm[61, 1], lm[65, 1] - lm[63, 1], 0.0)
        out[up, 1] += 0.3 * gap
        out[lo, 1] -= 0.3 * gap
    return out
