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
"""
from __future__ import annotations

import warnings
from typing import Iterable, Iterator

import cv2
import numpy as np

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


def _check_images(frame: np.ndarray, full_img: np.ndarray) -> None:
    for name, a in (("frame", frame), ("full_img", full_img)):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{name} must be uint8 [H, W, 3], got {a.dtype} {a.shape}")


def paste_frame(
    frame: np.ndarray, full_img: np.ndarray, info: CropInfo, *, extended: bool = False, seamless: bool = True
) -> np.ndarray:
    """One rendered frame pasted into (a copy of) the original picture.

    seamless=True: the official Poisson blend (``cv2.seamlessClone``, NORMAL_CLONE, full mask); the blend
    keeps the picture's colours at the box border, so a rendered face with other colours gets tinted.
    seamless=False: the resized patch written over the box (its top-left corner is ``location - size // 2``,
    which is the box itself unless the box passes the right/bottom edge).
    """
    frame, full_img = np.asarray(frame), np.asarray(full_img)
    _check_images(frame, full_img)
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
) -> Iterator[np.ndarray]:
    """``paste_frame`` over a stream of frames (a generator, so long videos need not fit in memory)."""
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="paste-back" + (" (seamlessClone)" if seamless else ""))
    for frame in frames:
        yield paste_frame(frame, full_img, info, extended=extended, seamless=seamless)


def render_frame_size(info: CropInfo, size: int = 256) -> tuple[int, int]:
    """(width, height) the official ``AnimateFromCoeff.generate`` resizes rendered frames to before the
    paste-back: ``(size, int(size * h / w))`` with ``(w, h) = crop_info.size`` (``src/facerender/animate.py``)."""
    w, h = info.size
    return size, int(size * h / w)
