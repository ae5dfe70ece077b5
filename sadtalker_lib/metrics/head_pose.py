"""Per-frame head motion features for Diversity and Beat Align.

Two estimators give ``HeadMotion.features`` ``[T, D]`` (NaN rows where a frame has no face):

* :class:`PnPHeadPose` (offline default, label ``solvePnP``): ``cv2.solvePnP`` of six dlib landmarks
  (nose tip 30, chin 8, outer eye corners 36 / 45, mouth corners 48 / 54; 0-based iBUG-68) against a
  generic 3-D face (the widely used 6-point model, millimetre-like units, nose tip at the origin), with a
  pinhole camera of focal length = image width centred in the image. Features = (yaw, pitch, roll) in
  radians, Z-Y-X Euler angles of the head rotation in camera axes (x right, y down, z forward).
* :class:`HopenetHeadPose` (label ``Hopenet``, needs ``hopenet_robust_alpha1.pkl``): the face box enlarged as
  in deep-head-pose ``test_on_video_dlib.py`` (left / right by half the width, up by 3/4 of the height,
  down by 1/4), resized so the short side is 224, centre-cropped to 224, ImageNet-normalised. Features:
  ``"embedding"`` (default; the paper's "head motion feature embeddings", the 2048-d pooled trunk output)
  or ``"angles"`` (yaw, pitch, roll in radians).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .faces import FaceTrack, track_faces
from .weights import find_weights, load_state

__all__ = ["HeadMotion", "PnPHeadPose", "HopenetHeadPose", "head_motion", "rotation_to_euler",
           "GENERIC_FACE_3D", "PNP_LANDMARKS"]

# Generic 3-D face, camera-like axes (x right, y down, z away from the camera), nose tip at the origin.
# The classic 6-point model (nose, chin, eye corners, mouth corners: (0,0,0), (0,-330,-65), (-+225,170,-135),
# (-+150,-150,-125) with y up, z towards the viewer) with y and z negated.
GENERIC_FACE_3D = np.array(
    [
        [0.0, 0.0, 0.0],  # nose tip (30)
        [0.0, 330.0, 65.0],  # chin (8)
        [-225.0, -170.0, 135.0],  # outer corner of the eye on the image's left (36)
        [225.0, -170.0, 135.0],  # outer corner of the eye on the image's right (45)
        [-150.0, 150.0, 125.0],  # mouth corner, image left (48)
        [150.0, 150.0, 125.0],  # mouth corner, image right (54)
    ],
    np.float64,
)
PNP_LANDMARKS = (30, 8, 36, 45, 48, 54)


@dataclass
class HeadMotion:
    """``features`` float64 ``[T, D]`` (NaN where no face), ``kind`` (``"angles"`` / ``"embedding"``), ``label``."""

    features: np.ndarray
    kind: str
    label: str
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.features).all(axis=1)


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation -> (yaw, pitch, roll) radians, ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    r = rotation
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.array([yaw, pitch, roll])


class PnPHeadPose:
    """Offline head pose: solvePnP of 6 dlib landmarks against ``GENERIC_FACE_3D``."""

    label = "solvePnP"
    kind = "angles"

    def pose(self, landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """``[68, 2]`` landmarks of an ``(H, W)`` image -> (yaw, pitch, roll) radians."""
        import cv2

        h, w = image_size
        camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
        points = np.asarray(landmarks, np.float64)[list(PNP_LANDMARKS)]
        ok, rvec, _ = cv2.solvePnP(GENERIC_FACE_3D, points, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            return np.full(3, np.nan)
        return rotation_to_euler(cv2.Rodrigues(rvec)[0])

    def __call__(self, frames: np.ndarray, track: FaceTrack) -> HeadMotion:
        feats = np.full((len(frames), 3), np.nan)
        for i in np.flatnonzero(track.found):
            feats[i] = self.pose(track.landmarks[i], frames[i].shape[:2])
        return HeadMotion(features=feats, kind=self.kind, label=self.label)


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # deep-head-pose transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


class HopenetHeadPose:
    """Hopenet head pose / embeddings; :class:`WeightsMissingError` without ``hopenet_robust_alpha1.pkl``."""

    label = "Hopenet"

    def __init__(self, weights: str | Path | None = None, *, kind: str = "embedding", device: str = "cpu"):

        from .hopenet import Hopenet

        if kind not in ("embedding", "angles"):
            raise ValueError(f"kind must be 'embedding' or 'angles', got {kind!r}")
        path = find_weights("hopenet", weights)
        from ..official.io import read_checkpoint  # the package's one torch.load (weights only)

        state = read_checkpoint(path)
        self.model = Hopenet()
        load_state(self.model, state, path)
        self.model.to(device).eval()
        self.kind, self.device = kind, device

    @staticmethod
    def crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Enlarged face crop (``test_on_video_dlib.py``), short side 224, centre 224x224 -> ``float32 [3, 224, 224]``
        (ImageNet-normalised)."""
        from PIL import Image

        h, w = frame.shape[:2]
        x1, y1, x2, y2 = box
        bw, bh = abs(x2 - x1), abs(y2 - y1)
        x1, x2 = max(int(x1 - 2 * bw / 4), 0), min(int(x2 + 2 * bw / 4), w)
        y1, y2 = max(int(y1 - 3 * bh / 4), 0), min(int(y2 + bh / 4), h)
        img = Image.fromarray(np.ascontiguousarray(frame[y1:y2, x1:x2]))
        scale = 224 / min(img.size)
        img = img.resize((max(224, round(img.size[0] * scale)), max(224, round(img.size[1] * scale))), Image.BILINEAR)
        left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
        x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        return x.transpose(2, 0, 1)

    def __call__(self, frames: np.ndarray, track: FaceTrack) -> HeadMotion:
        import torch

        idx = np.flatnonzero(track.found)
        dim = 2048 if self.kind == "embedding" else 3
        feats = np.full((len(frames), dim), np.nan)
        with torch.no_grad():
            for start in range(0, len(idx), 32):
                chunk = idx[start: start + 32]
                x = torch.from_numpy(np.stack([self.crop(frames[i], track.boxes[i]) for i in chunk])).to(self.device)
                if self.kind == "embedding":
                    out = self.model.embedding(x)
                else:
                    out = torch.stack([self.model.angles(lg) for lg in self.model(x)], -1).deg2rad()
                feats[chunk] = out.cpu().numpy()
        return HeadMotion(features=feats, kind=self.kind, label=self.label)


def head_motion(frames: np.ndarray, estimator=None, *, track: FaceTrack | None = None, name: str = "") -> HeadMotion:
    """Head motion features of ``frames`` (``uint8 [T, H, W, 3]``) with ``estimator`` (default :class:`PnPHeadPose`)."""
    estimator = estimator or PnPHeadPose()
    track = track if track is not None else track_faces(frames, name=name)
    track.require_any()
    motion = estimator(frames, track)
    if not track.found.all():
        motion.notes.append(f"{name}: {int((~track.found).sum())} frame(s) without a face skipped in head motion")
    return motion
