"""Small synthetic inputs for the eval tests (made here, no files needed)."""
from __future__ import annotations

import functools

import numpy as np

from sadtalker_lib.metrics.video_io import Clip

SR = 16000
FPS = 25


@functools.lru_cache(maxsize=1)
def astronaut_256() -> np.ndarray:
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


def face_clip(num_frames: int = 20, *, audio: bool = True, seed: int = 0, name: str = "face") -> Clip:
    """The astronaut's face drifting a few pixels per frame, with a noise-burst audio track."""
    rng = np.random.default_rng(seed)
    base = astronaut_256()
    shifts = np.round(3 * np.sin(np.arange(num_frames) / 3.0)).astype(int)
    frames = np.stack([np.roll(base, (int(s), int(-s)), axis=(0, 1)) for s in shifts])
    wav = None
    if audio:
        env = np.repeat(rng.random(num_frames) > 0.5, SR // FPS).astype(np.float32)
        wav = (0.3 * env * rng.standard_normal(num_frames * SR // FPS)).astype(np.float32)
    return Clip(frames=frames, fps=FPS, audio=wav, sample_rate=SR, name=name)


def faceless_clip(num_frames: int = 12) -> Clip:
    frames = np.full((num_frames, 256, 256, 3), 127, np.uint8)
    return Clip(frames=frames, fps=FPS, audio=np.zeros(num_frames * SR // FPS, np.float32), name="faceless")


def mouth_opening_coeffs(amounts) -> np.ndarray:
    """[T, 70] coefficients whose only non-zero entry is the expression direction that opens the face model's
    mouth most, at ``amounts`` [T] (the pose still): frames of ``train.facerender_eval.reference_frames`` then open
    and close the mouth and nothing else."""
    from sadtalker_lib.data.render import model_landmarks
    from sadtalker_lib.morphable.render import mouth_opening

    base = mouth_opening(model_landmarks(np.zeros((1, 70), np.float32)))[0]
    opens = [mouth_opening(model_landmarks(np.eye(70, dtype=np.float32)[k:k + 1] * 2.0))[0] - base for k in range(64)]
    coeffs = np.zeros((len(amounts), 70), np.float32)
    coeffs[:, int(np.argmax(opens))] = np.asarray(amounts, np.float32)
    return coeffs
