"""Paste rendered face frames back into the original picture (preprocess full / extfull).

Official behaviour (``src/utils/paste_pic.py``): each rendered frame is ``cv2.resize``d (bilinear) to the
paste box and Poisson-blended into the untouched original with
``cv2.seamlessClone(patch, full_img, 255 * ones, location, cv2.NORMAL_CLONE)``; there is no switch for it.
``seamless=False`` gives a plain (hard) paste of the same resized patch at the same place.

Paste box (``paste_box``): ``crop + quad`` for full (the face square), the crop box itself for extfull.
In extfull the renderer's frame has the face square's aspect (``CropInfo.size``) but is stretched to
the larger crop box, as the official code does.

Channel order does not matter here (every step works per channel); the official code works in BGR.
Frames: uint8 [h, w, 3]; original: uint8 [H, W, 3].

Fast seamless paste (``solver="fast"``; the default ``solver="opencv"`` calls ``cv2.seamlessClone``). With a
full mask, OpenCV 4.x's NORMAL_CLONE solves, per channel, the discrete Poisson equation (4-neighbour Laplacian)
on the (h - 2) x (w - 2) region centred on ``location`` (the mask's 1 px border is dropped), with Dirichlet
values = the original there. The guidance gradients are the patch's (forward differences) where the mask,
eroded by a 3 x 3 kernel three times against its zero border, is set (3 px in from each side), the original's
elsewhere; interior values are clipped to [0, 255] and truncated (not rounded). OpenCV solves with two 2-D DSTs
per channel built on complex DFTs of size 2n + 2 in float32, every frame. :class:`SeamlessPaste` computes once per
video everything that does not depend on the frame (the region, the original's part of the right-hand side, the
solver's factors) and per frame applies a DST-I (``scipy.fft``) along one axis and a tridiagonal (Thomas) solve
along the other, so the DST runs only along the axis whose length 2n + 2 has small prime factors. Same equation,
other float rounding: max |diff| 1 grey level against ``cv2.seamlessClone`` (a truncation flip; OpenCV's own
float32 error flips a few % of the face pixels against the exact solution, so the mean |diff| against a saved
OpenCV result, ~5e-3 over a picture, is larger than OpenCV's across CPUs: hence "opencv" stays the default).
Speed: ``benchmarks/paste_back.py`` (benchmarks/results/paste_back.md).
"""
from __future__ import annotations

import warnings
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import scipy.fft

from .align import CropInfo


def paste_box(info: CropInfo, extended: bool = False,
              full_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(oy1, oy2, ox1, ox2) in the original picture.

    full: ``(cly + ly, cly + ry, clx + lx, clx + rx)`` with the quad truncated by ``int()``;
    extfull (``extended=True``): ``(cly, cry, clx, crx)``.
    ``full_size`` (W, H) of the original: if ``info.rsize`` differs (a very large face was shrunk in
    ``align_face``), the box is scaled back to the original; the official code uses the shrunk numbers
    as they are, which misplaces the face, so this is a deliberate fix (with a warning).
    """
    if info.crop is None or info.quad is None:
        raise ValueError("paste-back needs a crop box: the portrait was preprocessed in 'resize' mode (no crop)")
    clx, cly, crx, cry = info.crop
    lx, ly, rx, ry = (int(v) for v in info.quad)
    box = (cly, cry, clx, crx) if extended else (cly + ly, cly + ry, clx + lx, clx + rx)
    if full_size is not None and info.rsize is not None and tuple(info.rsize) != tuple(full_size):
        sx, sy = full_size[0] / info.rsize[0], full_size[1] / info.rsize[1]
        warnings.warn(
            f"crop was computed at {info.rsize} but the picture is {full_size}; scaling the paste box "
            "(the official paste_pic would use the unscaled box)",
            stacklevel=2,
        )
        box = (round(box[0] * sy), round(box[1] * sy), round(box[2] * sx), round(box[3] * sx))
    return box


def paste_location(box: tuple[int, int, int, int], frame_w: int, frame_h: int) -> tuple[int, int]:
    """Centre (x, y) given to ``cv2.seamlessClone``: the box centre, pulled left/up only where the box
    would pass the right/bottom edge (``paste_pic``: ``min((ox1 + ox2) // 2, frame_w - (ox2 - ox1) // 2)``)."""
    oy1, oy2, ox1, ox2 = box
    return (min((ox1 + ox2) // 2, frame_w - (ox2 - ox1) // 2), min((oy1 + oy2) // 2, frame_h - (oy2 - oy1) // 2))


def resize_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The rendered frame stretched to the box: ``cv2.resize(frame, (ox2 - ox1, oy2 - oy1))`` (bilinear)."""
    oy1, oy2, ox1, ox2 = box
    if ox2 <= ox1 or oy2 <= oy1:
        raise ValueError(f"empty paste box (oy1, oy2, ox1, ox2) = {box}")
    return cv2.resize(np.asarray(frame, dtype=np.uint8), (ox2 - ox1, oy2 - oy1))


def _check_image(name: str, a: np.ndarray) -> None:
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 [H, W, 3], got {a.dtype} {a.shape}")


def _check_images(frame: np.ndarray, full_img: np.ndarray) -> None:
    _check_image("frame", frame)
    _check_image("full_img", full_img)


SOLVERS = ("fast", "opencv")  # the seamless paste's Poisson solver: SeamlessPaste, or cv2.seamlessClone per frame
ERODE_PX = 3  # OpenCV Cloning::computeDerivatives: erode(mask, 3 x 3 ones, iterations=3) -> 3 px off each side


def _largest_prime_factor(n: int) -> int:
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1
    return max(largest, n)


def _dst_rank(n: int) -> tuple:
    """Sort key of an axis of n unknowns for the DST-I (an FFT of length 2 (n + 1)): smooth lengths first
    (largest prime factor <= 11, where ``scipy.fft`` needs no Bluestein step), then the longer axis."""
    p = _largest_prime_factor(n + 1)
    return (p > 11, p, -n)


class SeamlessPaste:
    """The seamless (Poisson) paste-back of one video with everything frame-independent computed once.

    ``SeamlessPaste(full_img, info, extended=...)(frame)`` gives ``cv2.seamlessClone``'s result (the official
    ``paste_pic``) within 1 grey level (module docstring). ``full_img``: uint8 [H, W, 3], kept by reference (not
    modified; the pixels outside the region are copied from it each frame). ``dtype``: the solver's float type.

    Per-video state: the region (``y0, x0``, size ``h x w`` = the paste box less 1 px a side), the original's part
    of the right-hand side, the Thomas factors. Work layout [L, 3, K]: K = the DST axis, L = the tridiagonal one.
    """

    def __init__(self, full_img: np.ndarray, info: CropInfo, *, extended: bool = False,
                 dtype: type = np.float32):
        full_img = np.asarray(full_img)
        _check_image("full_img", full_img)
        frame_h, frame_w = full_img.shape[:2]
        self.full_img, self.extended, self.dtype = full_img, extended, np.dtype(dtype)
        self.box = paste_box(info, extended, full_size=(frame_w, frame_h))
        oy1, oy2, ox1, ox2 = self.box
        ph, pw = oy2 - oy1, ox2 - ox1
        if ph > frame_h or pw > frame_w:
            raise ValueError(f"paste patch {pw}x{ph} is larger than the picture {frame_w}x{frame_h}")
        if min(ph, pw) < 2 * ERODE_PX + 3:
            raise ValueError(f"paste box {pw}x{ph} is too small for the seamless paste (use solver='opencv')")
        self.location = paste_location(self.box, frame_w, frame_h)
        h, w = ph - 2, pw - 2  # OpenCV drops the mask's 1 px border
        y0, x0 = self.location[1] - h // 2, self.location[0] - w // 2
        if y0 < 0 or x0 < 0 or y0 + h > frame_h or x0 + w > frame_w:
            raise ValueError(f"seamless region {w}x{h} at ({x0}, {y0}) leaves the picture {frame_w}x{frame_h}")
        self.region = (y0, x0, h, w)
        self._region_u8 = full_img[y0:y0 + h, x0:x0 + w].copy()
        n, m = h - 2, w - 2  # unknowns: the region's interior [n, m]
        # the DST runs along the axis whose FFT length 2 (N + 1) factors best (ties: the longer axis)
        dst_x = _dst_rank(m) <= _dst_rank(n)
        self._to_work = (0, 2, 1) if dst_x else (1, 2, 0)  # [n, m, 3] -> [L, 3, K]
        self._from_work = (0, 2, 1) if dst_x else (2, 0, 1)
        big_l, big_k = (n, m) if dst_x else (m, n)
        inner = np.zeros((h, w), np.float64)  # the eroded mask: 1 where the patch's gradients guide
        inner[ERODE_PX:h - ERODE_PX, ERODE_PX:w - ERODE_PX] = 1.0
        d = self._region_u8.astype(np.float64)
        rhs = _divergence((d[:, 1:] - d[:, :-1]) * (1 - inner[:, :-1, None]),
                          (d[1:] - d[:-1]) * (1 - inner[:-1, :, None]))
        rhs[0] -= d[0, 1:-1]  # Dirichlet values (the original on the region's 1 px frame) move to the right side
        rhs[-1] -= d[-1, 1:-1]
        rhs[:, 0] -= d[1:-1, 0]
        rhs[:, -1] -= d[1:-1, -1]
        self._rhs_full = np.ascontiguousarray(rhs.transpose(self._to_work), dtype=self.dtype)  # [L, 3, K]
        # after a DST-I along K, mode k: u[i-1] + a_k u[i] + u[i+1] = r[i] along L, a_k = 2 cos(pi (k+1)/(K+1)) - 4;
        # Thomas with unit off-diagonals, run from both ends to the middle row q (the matrix is persymmetric, so both
        # ends share the pivots p_0 = a_k, p_i = a_k - 1 / p_{i-1}); stored: 1 / p_i [L, 1, K] and the middle's
        # 1 / (a_k - 1 / p_{q-1} - 1 / p_{L-2-q}) [1, K]
        a = 2.0 * np.cos(np.pi * np.arange(1, big_k + 1) / (big_k + 1)) - 4.0
        inv = np.empty((big_l, big_k), np.float64)
        inv[0] = 1.0 / a
        for i in range(1, big_l):
            inv[i] = 1.0 / (a - inv[i - 1])
        q = big_l // 2
        middle = 1.0 / (a - inv[q - 1] - inv[big_l - 2 - q])
        self._inv_pivot = inv[:, None].astype(self.dtype)  # [L, 1, K]
        self._inv_middle = middle[None].astype(self.dtype)  # [1, K]
        self._inv_wide: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # C -> both, repeated to [L, C, K], [C, K]

    def matches(self, full_img: np.ndarray) -> bool:
        """Whether this precomputation holds for ``full_img`` (same array, region unchanged)."""
        y0, x0, h, w = self.region
        return full_img is self.full_img and np.array_equal(full_img[y0:y0 + h, x0:x0 + w], self._region_u8)

    def _solve(self, r: np.ndarray) -> np.ndarray:
        """The Poisson equation on the interior: right-hand sides [L, C, K] (C = 3 per frame) -> solutions [L, C, K]
        (in place)."""
        r = scipy.fft.dst(r, type=1, axis=2, overwrite_x=True)
        self._tridiagonal(r)
        return scipy.fft.idst(r, type=1, axis=2, overwrite_x=True)

    def _tridiagonal(self, r: np.ndarray) -> None:
        """Solve u[i-1] + a_k u[i] + u[i+1] = r[i] along axis 0 (u[-1] = u[L] = 0) in place: rows i and L-1-i
        are eliminated together (one strided view), down to the middle row q, then substituted back outward."""
        big_l, q, c = len(r), len(r) // 2, r.shape[1]
        if c not in self._inv_wide:  # contiguous factors: no broadcasting in the sweeps' many small operations
            self._inv_wide[c] = (np.repeat(self._inv_pivot, c, axis=1), np.repeat(self._inv_middle, c, axis=0))
        inv, middle = self._inv_wide[c]
        n_pairs, tmp = (big_l - 1) // 2, np.empty((2,) + r.shape[1:], r.dtype)

        def rows(i: int, j: int) -> np.ndarray:  # the view of rows i < j
            return r[i:j + 1:j - i]

        for i in range(n_pairs):  # forward elimination from both ends
            p = rows(i, big_l - 1 - i)
            if i:
                np.subtract(p, rows(i - 1, big_l - i), out=p)
            np.multiply(p, inv[i], out=p)
        if big_l % 2 == 0:  # even: row q - 1 has no partner
            if q > 1:
                r[q - 1] -= r[q - 2]
            r[q - 1] *= inv[q - 1]
        r[q] -= r[q - 1]
        if q + 1 < big_l:
            r[q] -= r[q + 1]
        r[q] *= middle
        if big_l % 2 == 0:
            r[q - 1] -= inv[q - 1] * r[q]
        for i in range(n_pairs - 1, -1, -1):  # back substitution outward
            nxt = r[q] if i + 1 == big_l - 2 - i else rows(i + 1, big_l - 2 - i)
            np.multiply(inv[i], nxt, out=tmp)
            p = rows(i, big_l - 1 - i)
            np.subtract(p, tmp, out=p)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """A rendered frame uint8 [h, w, 3] (any size: it is stretched to the box) -> the picture with it pasted."""
        return self.paste_batch([frame])[0]

    def paste_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several frames solved together (the same pictures as one by one; fewer, larger array operations in the
        sequential tridiagonal sweeps, so cheaper per frame). frames: uint8 [h, w, 3] each."""
        frames = [np.asarray(f) for f in frames]
        for f in frames:
            _check_image("frame", f)
        big_l, _, big_k = self._rhs_full.shape
        r = np.empty((big_l, 3 * len(frames), big_k), self.dtype)  # [L, 3 B, K]
        for b, frame in enumerate(frames):
            self._right_side(frame, r[:, 3 * b:3 * b + 3])
        u = self._solve(r)
        np.clip(u, 0.0, 255.0, out=u)
        y0, x0, h, w = self.region
        outs = []
        for b in range(len(frames)):
            out = self.full_img.copy()
            out[y0 + 1:y0 + h - 1, x0 + 1:x0 + w - 1] = u[:, 3 * b:3 * b + 3].transpose(self._from_work)  # truncates
            outs.append(out)
        return outs

    def _right_side(self, frame: np.ndarray, r: np.ndarray) -> None:
        """Write one frame's right-hand side into r [L, 3, K]: the original's part + the divergence of the patch's
        gradients where the eroded mask is set (region rows / columns e .. size - e - 1)."""
        patch = resize_patch(frame, self.box)
        s = patch[1:-1, 1:-1].transpose(self._to_work).astype(self.dtype)  # the region [L + 2, 3, K + 2]
        e, (big_l, _, big_k) = ERODE_PX, s.shape
        d_l = s[e + 1:big_l - e + 1, :, e:big_k - e] - s[e:big_l - e, :, e:big_k - e]  # forward differences
        d_k = s[e:big_l - e, :, e + 1:big_k - e + 1] - s[e:big_l - e, :, e:big_k - e]
        r[...] = self._rhs_full  # backward-difference divergence below (interior index = region index - 1)
        r[e:big_l - e, :, e - 1:big_k - e - 1] -= d_l
        r[e - 1:big_l - e - 1, :, e:big_k - e] -= d_k
        d_l += d_k
        r[e - 1:big_l - e - 1, :, e - 1:big_k - e - 1] += d_l


def _divergence(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Backward-difference divergence of forward-difference fields gx [h, w - 1, C], gy [h - 1, w, C] on the
    interior [h - 2, w - 2, C] (OpenCV's computeLaplacianX/Y there)."""
    return (gx[1:-1, 1:] - gx[1:-1, :-1]) + (gy[1:, 1:-1] - gy[:-1, 1:-1])


_LAST_PASTE: list[SeamlessPaste] = []  # paste_frame's per-video cache: the last SeamlessPaste built


def _seamless_for(full_img: np.ndarray, info: CropInfo, extended: bool) -> SeamlessPaste:
    frame_h, frame_w = full_img.shape[:2]
    box = paste_box(info, extended, full_size=(frame_w, frame_h))
    if _LAST_PASTE and _LAST_PASTE[0].box == box and _LAST_PASTE[0].matches(full_img):
        return _LAST_PASTE[0]
    with warnings.catch_warnings():  # paste_box already warned above
        warnings.simplefilter("ignore")
        sp = SeamlessPaste(full_img, info, extended=extended)
    _LAST_PASTE[:] = [sp]
    return sp


def paste_frame(
    frame: np.ndarray, full_img: np.ndarray, info: CropInfo, *, extended: bool = False, seamless: bool = True,
    solver: str = "opencv",
) -> np.ndarray:
    """One rendered frame pasted into (a copy of) the original picture.

    seamless=True: the official Poisson blend (``cv2.seamlessClone``, NORMAL_CLONE, full mask); the blend
    keeps the picture's colours at the box border, so a rendered face with other colours gets tinted.
    solver="opencv" (default): ``cv2.seamlessClone`` itself, every frame. solver="fast": :class:`SeamlessPaste`
    (within 1 grey level of it, several times faster), reused while the same ``full_img`` array and box come back (the
    last one is cached).
    seamless=False: the resized patch written over the box (its top-left corner is ``location - size // 2``,
    which is the box itself unless the box passes the right/bottom edge).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got '{solver}'")
    frame, full_img = np.asarray(frame), np.asarray(full_img)
    _check_images(frame, full_img)
    if seamless and solver == "fast":
        return _seamless_for(full_img, info, extended)(frame)
    frame_h, frame_w = full_img.shape[:2]
    box = paste_box(info, extended, full_size=(frame_w, frame_h))
    patch = resize_patch(frame, box)
    ph, pw = patch.shape[:2]
    if ph > frame_h or pw > frame_w:
        raise ValueError(f"paste patch {pw}x{ph} is larger than the picture {frame_w}x{frame_h}")
    location = paste_location(box, frame_w, frame_h)
    if seamless:
        mask = 255 * np.ones(patch.shape, patch.dtype)
        return cv2.seamlessClone(patch, full_img, mask, (int(location[0]), int(location[1])), cv2.NORMAL_CLONE)
    x0, y0 = max(location[0] - pw // 2, 0), max(location[1] - ph // 2, 0)
    out = full_img.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = patch[: frame_h - y0, : frame_w - x0]
    return out


def paste_frames(
    frames: Iterable[np.ndarray],
    full_img: np.ndarray,
    info: CropInfo,
    *,
    extended: bool = False,
    seamless: bool = True,
    progress: bool = False,
    solver: str = "opencv",
    batch: int = 8,
) -> Iterator[np.ndarray]:
    """``paste_frame`` over a stream of frames (a generator, so long videos need not fit in memory); the fast
    solver's precomputation is made once for the stream and it solves ``batch`` frames at a time."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="paste-back" + (f" (seamless, {solver})" if seamless else ""))
    if not (seamless and solver == "fast"):
        for frame in frames:
            yield paste_frame(frame, full_img, info, extended=extended, seamless=seamless, solver=solver)
        return
    full_img = np.asarray(full_img)
    _check_image("full_img", full_img)
    paste, chunk = SeamlessPaste(full_img, info, extended=extended), []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == batch:
            yield from paste.paste_batch(chunk)
            chunk = []
    if chunk:
        yield from paste.paste_batch(chunk)


def render_frame_size(info: CropInfo, size: int = 256) -> tuple[int, int]:
    """(width, height) the official ``AnimateFromCoeff.generate`` resizes rendered frames to before the
    paste-back: ``(size, int(size * h / w))`` with ``(w, h) = crop_info.size`` (``src/facerender/animate.py``)."""
    w, h = info.size
    return size, int(size * h / w)
