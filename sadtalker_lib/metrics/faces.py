"""Per-frame face boxes and 68 landmarks of a clip, found once and shared by LSE, CSIM, Diversity, Beat Align.

The default detector is the project's offline dlib detector (``sadtalker_lib.face.detect``). Frames
without a face are marked (``found[t] == False``, NaN box / landmarks) rather than dropped, so every metric
can decide what a missing face means for it (and report it).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..face.detect import MultipleFacesWarning, NoFaceError, default_detector

__all__ = ["FaceTrack", "track_faces", "NoFaceError"]


@dataclass
class FaceTrack:
    """``boxes`` float64 ``[T, 4]`` (x1, y1, x2, y2), ``landmarks`` float64 ``[T, 68, 2]`` (x, y),
    ``found`` bool ``[T]``."""

    boxes: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.found.shape[0])

    @property
    def missing_fraction(self) -> float:
        return float(1.0 - self.found.mean()) if self.num_frames else 1.0

    def require_any(self) -> None:
        if not self.found.any():
            raise NoFaceError(f"no face found in any frame of {self.name or 'the clip'}")


def track_faces(frames: np.ndarray, detector=None, *, name: str = "", progress: bool = False) -> FaceTrack:
    """Detect the largest face and its 68 landmarks in every frame (``uint8 [T, H, W, 3]`` RGB)."""
    detector = detector or default_detector()
    t = len(frames)
    boxes = np.full((t, 4), np.nan)
    landmarks = np.full((t, 68, 2), np.nan)
    found = np.zeros(t, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MultipleFacesWarning)
        for i in tqdm(range(t), desc=f"faces {name}".strip(), disable=not progress, leave=False):
            try:
                det = detector.detect(frames[i])
            except NoFaceError:
                continue
            boxes[i], landmarks[i], found[i] = det.box, det.landmarks, True
    return FaceTrack(boxes=boxes, landmarks=landmarks, found=found, name=name)
