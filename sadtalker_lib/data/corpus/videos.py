"""A corpus from real talking-face videos (VoxCeleb / HDTF style), in the corpus format (``format.py``).

``build_video_corpus`` decodes each video at 25 fps with 16 kHz audio (``sadtalker_lib.video``), finds dlib
landmarks per frame, crops a fixed square around the face and fits the morphable model to the landmarks.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ...coeffs import EXP_DIM, MOTION_DIM
from ...video import VIDEO_SUFFIXES
from ..visemes import EXPRESSION_DIMS
from .format import FPS, SAMPLES_PER_FRAME, audio_fields, make_index, save_clip, write_index

__all__ = ["MOUTH_DIMS", "VIDEO_SUFFIXES", "build_video_corpus"]

# the expression directions that move the mouth: the lip-only projection of fitted (real) coefficients
MOUTH_DIMS = tuple(EXPRESSION_DIMS[n] for n in ("jaw_open", "lip_corners_up", "lip_corners_down", "lip_stretch",
                                                "pucker", "upper_lip_raise", "lower_lip_depress", "lips_part",
                                                "mouth_shift"))


def _track_landmarks(frames: np.ndarray, detector) -> np.ndarray:
    """dlib landmarks for every frame [T, 68, 2]; frames where no face is found reuse the nearest found one."""
    from ...face.detect import MultipleFacesWarning, NoFaceError

    out: list[np.ndarray | None] = []
    for frame in frames:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MultipleFacesWarning)
                out.append(detector.landmarks(frame))
        except NoFaceError:
            out.append(None)
    found = [i for i, lm in enumerate(out) if lm is not None]
    if not found:
        raise NoFaceError("no face found in any frame")
    for i in range(len(out)):
        if out[i] is None:
            out[i] = out[min(found, key=lambda j: abs(j - i))]
    return np.stack(out).astype(np.float32)


def _fixed_crop(landmarks: np.ndarray, size: int, face_fraction: float = 0.5) -> np.ndarray:
    """One square crop for the whole clip (as ``render.load_portrait`` frames a portrait): affine [2, 3]."""
    lo, hi = landmarks.min(1), landmarks.max(1)  # [T, 2]
    side = float(np.median(np.maximum(hi[:, 0] - lo[:, 0], 0.8 * (hi[:, 1] - lo[:, 1])))) / face_fraction
    cx, cy = np.median((lo + hi) / 2, axis=0)
    cy -= 0.06 * side
    s = size / side
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])


def _blink_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Eye closure [T] in [0, 1] from the eye aspect ratio (supp. Eq. 4-6) relative to the clip's open eyes.

    0 while the ratio stays above 90 % of the clip's open-eye value (its 90th percentile), 1 at 30 % and below.
    """
    from ...morphable.render import eye_aspect_ratio

    ear = eye_aspect_ratio(landmarks.astype(np.float64))
    rel = ear / max(float(np.percentile(ear, 90)), 1e-6)
    return np.clip((0.9 - rel) / 0.6, 0.0, 1.0).astype(np.float32)


def build_video_corpus(video_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int = 128,
                       max_seconds: float | None = None, max_clips: int | None = None, fit_coeffs: bool = True,
                       fit_iterations: int | None = None, identity_of: Callable[[Path], str] | None = None,
                       detector=None, progress: bool = True) -> Path:
    """Cache a folder of real talking-face videos (``*.mp4``, ...) into ``out_dir``; returns its ``corpus.json``.

    Each video: frames at 25 fps and its audio at 16 kHz (imageio-ffmpeg), dlib landmarks per frame, one fixed
    square face crop of ``size`` px, and coefficients fitted to the landmarks (``morphable.fit.fit_video``, one
    identity per clip; ``fit_coeffs=False`` stores zeros and ``coeffs_fitted: false``). ``exp_lip`` is the fitted
    expression restricted to the mouth directions (``MOUTH_DIMS``). Identity labels: ``identity_of(path)``
    (default: the file name); the style id of a clip is its identity id, as the official PoseVAE's 46 style
    classes are its training speakers. Videos without an audio track or a face are skipped with a warning.
    """
    import cv2
    from tqdm.auto import tqdm

    from ...face.detect import DlibDetector, NoFaceError
    from ...video import VideoError, read_video, read_video_audio

    video_dir, out_dir = Path(video_dir), Path(out_dir)
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if video_dir.is_dir() else []
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {video_dir}")
    videos = videos[:max_clips] if max_clips is not None else videos
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = detector or DlibDetector(max_side=320)
    identity_of = identity_of or (lambda p: p.stem)
    identities: list[str] = []
    entries, skipped = [], []
    max_frames = None if max_seconds is None else max(1, int(round(max_seconds * FPS)))
    for path in tqdm(videos, desc="video corpus", disable=not progress):
        try:
            samples = read_video_audio(path)
            wav, mel, n_audio = audio_fields(samples, max_frames)
            frames_full = read_video(path, fps=FPS, max_frames=n_audio)
            n = min(n_audio, len(frames_full))
            wav, mel, frames_full = wav[: int(n * SAMPLES_PER_FRAME)], mel[:n], frames_full[:n]
            lm_full = _track_landmarks(frames_full, detector)
        except (VideoError, NoFaceError, ValueError) as e:
            warnings.warn(f"skipping {path.name}: {e}", stacklevel=2)
            skipped.append(dict(file=path.name, reason=str(e)))
            continue
        m = _fixed_crop(lm_full, size)
        frames = np.stack([cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
                           for f in frames_full])
        landmarks = (lm_full @ m[:, :2].T + m[:, 2]).astype(np.float32)
        coeffs = np.zeros((n, MOTION_DIM), np.float32)
        fit_error = None
        if fit_coeffs:
            from ...morphable.fit import FitConfig, fit_video

            cfg = FitConfig() if fit_iterations is None else FitConfig(
                iterations=fit_iterations, rigid_iterations=max(1, fit_iterations // 5))
            result = fit_video(frames, config=cfg, landmarks=landmarks)
            coeffs = result.coeffs_70.astype(np.float32)
            fit_error = float(result.mean_error_px)
        exp_lip = np.zeros((n, EXP_DIM), np.float32)
        exp_lip[:, list(MOUTH_DIMS)] = coeffs[:, list(MOUTH_DIMS)]
        name = identity_of(path)
        if name not in identities:
            identities.append(name)
        ident = identities.index(name)
        clip_id = f"clip_{len(entries):04d}"
        file = save_clip(out_dir, clip_id, dict(
            frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
            blink=_blink_from_landmarks(landmarks), phonemes=np.zeros(0, "<U8"),
            phoneme_ms=np.zeros((0, 2), np.float32)))
        entries.append(dict(
            id=clip_id, file=file, n_frames=int(n), duration_s=n / FPS, source=path.name,
            style_id=ident, style=name, identity_id=ident, identity=name,
            coeffs_fitted=bool(fit_coeffs), coeffs_source="morphable.fit.fit_video" if fit_coeffs else "zeros",
            lip_source="fitted-mouth-dims" if fit_coeffs else "zeros", fit_error_px_224=fit_error))
    if not entries:
        raise ValueError(f"no usable clip in {video_dir}; skipped: {skipped}")
    index = make_index(
        "video", size,
        source_dir=str(video_dir), expression_space="DefaultMorphableModel" if fit_coeffs else None,
        styles=list(identities), identities=list(identities),
        builder=dict(max_seconds=max_seconds, max_clips=max_clips, fit_coeffs=fit_coeffs,
                     fit_iterations=fit_iterations),
        clips=entries, skipped=skipped)
    return write_index(out_dir, index)
