"""One real talking-face video -> one corpus clip (the per-clip work of ``videos.build_video_corpus``).

    video ──16 kHz mono audio (its track, or <stem>.wav beside a silent video)──► audio, mel windows
          ──25 fps frames (ffmpeg resamples 30 fps / VFR), first ``max_seconds``──► official crop (first face)
          ──resize to ``DETECT_SIZE``──► dlib 68 landmarks per frame ──► fit_video (shared identity)
          ──► fit_mouth (lip-only target) ──► eye ratio, blink, face descriptors ──► clips/<stem>.npz + .json

The crop is the official ``--preprocess crop`` geometry (``face.align.crop``: the FFHQ-style face square
from the first frame's landmarks, the same box for every frame, as ``Preprocesser.crop`` does for a video),
resized to 256 px as ``CropAndExtract.generate`` does; landmarks are then found on those crops, as the
official landmark extractor does. Frames are stored at the corpus ``size``.

Each finished clip leaves ``<stem>.npz`` (the corpus arrays, ``format.save_clip``) and ``<stem>.json`` (its
index entry, the settings it was made with and the source file's size / mtime); :func:`cached_result` reuses a
clip whose json matches, so an interrupted build resumes. A clip that fails (no face, no audio) leaves only a
json with its ``error``, so it is reported again without being redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ...coeffs import EXP_DIM, MOTION_DIM
from ...paths import partial_path
from ..visemes import EXPRESSION_DIMS
from .format import FPS, SAMPLES_PER_FRAME, audio_fields, save_clip

__all__ = ["MOUTH_DIMS", "DETECT_SIZE", "DECODE_MAX_SIDE", "CLIP_DIR", "ClipSettings", "clip_stem", "cached_result",
           "process_clip", "worker_main", "find_audio", "track_landmarks", "blink_from_eye_ratio"]

# the expression directions that move the mouth (lips and jaw) in the stand-in face model: what the lip-only
# target may move (``morphable.fit.fit_mouth``)
MOUTH_DIMS = tuple(EXPRESSION_DIMS[n] for n in ("jaw_open", "lip_corners_up", "lip_corners_down", "lip_stretch",
                                                "pucker", "upper_lip_raise", "lower_lip_depress", "lips_part",
                                                "mouth_shift"))
DETECT_SIZE = 256  # the official crop is resized to 256 (CropAndExtract.generate pic_size) before landmarks
DECODE_MAX_SIDE = 512  # frames are decoded at most this large: the face square then still has >= 256 px
CLIP_DIR = "clips"  # inside the corpus folder: <stem>.npz and <stem>.json per source video
EMBED_FRAMES = 5  # frames (evenly spaced) whose dlib descriptors say who is in the clip (``people.py``)
WORKER_PREFIX = "@@clip "  # starts a worker's result line on its stdout (``worker_main``)
SETTINGS_VERSION = 2  # bump when the per-clip processing changes, so cached clips are redone


class ClipSettings(dict):
    """The per-clip settings (size, max_seconds, fit_coeffs, fit_iterations, lip_iterations); ``key`` names them."""

    @property
    def key(self) -> str:
        blob = json.dumps(dict(self, version=SETTINGS_VERSION, detect_size=DETECT_SIZE), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def clip_stem(path: Path) -> str:
    """File-system-safe stem for a source video (``a b.mp4`` -> ``a_b``); the suffix is kept when not .mp4."""
    stem = path.stem if path.suffix.lower() == ".mp4" else f"{path.stem}_{path.suffix.lower().lstrip('.')}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)


def _source_id(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_result(path: Path, out_dir: Path, settings: ClipSettings) -> dict | None:
    """The stored result of ``path`` when it was made with ``settings`` from the same file, else None."""
    meta_path = out_dir / CLIP_DIR / f"{clip_stem(path)}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("settings_key") != settings.key or meta.get("source_file") != _source_id(path):
        return None
    if "error" not in meta and not (out_dir / meta["entry"]["file"]).is_file():
        return None
    return meta


def _write_meta(out_dir: Path, path: Path, settings: ClipSettings, **fields) -> dict:
    meta = dict(source_file=_source_id(path), settings_key=settings.key, settings=dict(settings), **fields)
    target = out_dir / CLIP_DIR / f"{clip_stem(path)}.json"
    tmp = partial_path(target)
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, target)
    return meta


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def find_audio(path: Path) -> tuple[np.ndarray, str]:
    """16 kHz mono samples of a video: its audio track, else ``<stem>.wav`` beside it -> (samples, source)."""
    from ...video import VideoError, decode_audio, probe_video

    if probe_video(path)["has_audio"]:
        return decode_audio(path), "track"
    for wav in sorted(path.parent.glob(f"{path.stem}.*")):
        if wav.suffix.lower() == ".wav":
            return decode_audio(wav), wav.name
    raise VideoError(f"{path.name} has no audio track and there is no {path.stem}.wav beside it")


def track_landmarks(frames: np.ndarray, detector) -> tuple[np.ndarray, int]:
    """dlib landmarks of every frame -> ([T, 68, 2], frames without a face); those reuse the nearest found one."""
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
    return np.stack(out).astype(np.float32), len(out) - len(found)


def blink_from_eye_ratio(ear: np.ndarray) -> np.ndarray:
    """Eye closure [T] in [0, 1] from the eye aspect ratio (supp. Eq. 4-6) relative to the clip's open eyes.

    0 while the ratio stays above 90 % of the clip's open-eye value (its 90th percentile), 1 at 30 % and below.
    """
    rel = ear / max(float(np.percentile(ear, 90)), 1e-6)
    return np.clip((0.9 - rel) / 0.6, 0.0, 1.0).astype(np.float32)


def _first_face(frames: np.ndarray, detector, step: int = 5) -> np.ndarray:
    """Landmarks [68, 2] of the first frame with a face (frame 0, else every ``step``-th frame)."""
    from ...face.detect import MultipleFacesWarning, NoFaceError

    for t in [0, *range(1, len(frames), step)]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MultipleFacesWarning)
                return detector.landmarks(frames[t])
        except NoFaceError:
            continue
    raise NoFaceError(f"no face found in any of the {len(frames)} frames (checked every {step}th)")


def _decode_size(path: Path) -> tuple[int, int] | None:
    from ...video import probe_video

    info = probe_video(path)
    w, h = info["width"], info["height"]
    if max(w, h) <= DECODE_MAX_SIDE:
        return None
    s = DECODE_MAX_SIDE / max(w, h)
    return (max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2))


def _face_descriptors(crops: np.ndarray, landmarks: np.ndarray) -> list[list[float]] | None:
    """dlib 128-d descriptors of ``EMBED_FRAMES`` evenly spaced frames [K][128] (None if the model is missing)."""
    try:
        from ...metrics.csim import DlibFaceEmbedder

        embedder = DlibFaceEmbedder()
    except (ImportError, RuntimeError) as e:
        warnings.warn(f"no dlib face descriptor model ({e}): identities fall back to file names", stacklevel=2)
        return None
    picks = np.unique(np.linspace(0, len(crops) - 1, EMBED_FRAMES).round().astype(int))
    return [embedder.embed(crops[t], landmarks[t]).tolist() for t in picks]


# ---------------------------------------------------------------------------------------------
# One clip
# ---------------------------------------------------------------------------------------------
def process_clip(path: str | os.PathLike, out_dir: str | os.PathLike, settings: ClipSettings,
                 detector=None) -> dict:
    """Make (or reuse) the clip of one video; returns its meta (``entry`` for the index, ``descriptors``) or a
    meta with ``error`` when the video is unusable (no face, no audio, too short)."""
    from ...face.detect import NoFaceError
    from ...video import VideoError

    path, out_dir = Path(path), Path(out_dir)
    (out_dir / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    cached = cached_result(path, out_dir, settings)
    if cached is not None:
        return dict(cached, cached=True)
    try:
        meta = _make_clip(path, out_dir, settings, detector)
    except (VideoError, NoFaceError, ValueError) as e:
        return dict(_write_meta(out_dir, path, settings, error=f"{type(e).__name__}: {e}"), cached=False)
    return dict(meta, cached=False)


def _make_clip(path: Path, out_dir: Path, settings: ClipSettings, detector) -> dict:
    import cv2

    from ...face.align import crop as official_crop
    from ...face.align import resize_square
    from ...face.detect import DlibDetector
    from ...morphable.render import eye_aspect_ratio
    from ...video import probe_video, read_video

    detector = detector or DlibDetector(max_side=DETECT_SIZE + 64)
    size = int(settings["size"])
    max_frames = None if settings["max_seconds"] is None else max(1, int(round(settings["max_seconds"] * FPS)))
    samples, audio_source = find_audio(path)
    wav, mel, n_audio = audio_fields(samples, max_frames)
    frames_full = read_video(path, fps=FPS, max_frames=n_audio, size=_decode_size(path), scale_flags="area")
    n = min(n_audio, len(frames_full))
    wav, mel, frames_full = wav[: int(n * SAMPLES_PER_FRAME)], mel[:n], frames_full[:n]

    lm_first = _first_face(frames_full, detector)
    faces, crop_info = official_crop(list(frames_full), lm_first, mode="crop")
    del frames_full
    crops = np.stack([resize_square(f, DETECT_SIZE) for f in faces])  # [T, 256, 256, 3]
    lm_crop, n_missing = track_landmarks(crops, detector)

    coeffs = np.zeros((n, MOTION_DIM), np.float32)
    exp_lip = np.zeros((n, EXP_DIM), np.float32)
    id_coeff = np.zeros(80, np.float32)
    fit_error = lip_error = None
    if settings["fit_coeffs"]:
        from ...morphable.fit import FitConfig, fit_mouth, fit_video

        it = settings["fit_iterations"]
        cfg = FitConfig() if it is None else FitConfig(iterations=it, rigid_iterations=max(1, it // 5))
        full = fit_video(crops, config=cfg, landmarks=lm_crop)
        lip = fit_mouth(full, MOUTH_DIMS, iterations=int(settings["lip_iterations"]))
        coeffs = full.coeffs_70.astype(np.float32)
        exp_lip = lip.expression.astype(np.float32)
        id_coeff = full.identity[0].astype(np.float32)
        fit_error, lip_error = float(full.mean_error_px), float(lip.mean_error_px)

    descriptors = _face_descriptors(crops, lm_crop)
    scale = size / DETECT_SIZE
    frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in crops])
    landmarks = (lm_crop * scale).astype(np.float32)
    ear = np.asarray(eye_aspect_ratio(landmarks.astype(np.float64)), np.float32)
    stem = clip_stem(path)
    save_clip(out_dir / CLIP_DIR, stem, dict(
        frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
        blink=blink_from_eye_ratio(ear), phonemes=np.zeros(0, "<U8"), phoneme_ms=np.zeros((0, 2), np.float32),
        id_coeff=id_coeff, eye_ratio=ear,
        face_descriptors=np.asarray(descriptors if descriptors is not None else np.zeros((0, 128)), np.float32)))
    info = probe_video(path)
    fitted = bool(settings["fit_coeffs"])
    entry = dict(
        file=f"{CLIP_DIR}/{stem}.npz", n_frames=int(n), duration_s=n / FPS, source=path.name,
        source_fps=info["fps"], audio_source=audio_source, frames_without_face=int(n_missing),
        crop=dict(mode="crop", box=list(crop_info.crop), quad=list(crop_info.quad), size=list(crop_info.size)),
        coeffs_fitted=fitted, coeffs_source="morphable.fit.fit_video" if fitted else "zeros",
        lip_source="morphable.fit.fit_mouth [stand-in for Wav2Lip + R_e]" if fitted else "zeros",
        fit_error_px_224=fit_error, lip_fit_error_px_224=lip_error)
    return _write_meta(out_dir, path, settings, entry=entry, descriptors=descriptors)


def worker_main(argv: list[str] | None = None) -> int:
    """A clip worker (``videos.build_video_corpus`` starts it with ``[OUT_DIR, SETTINGS_JSON]``): reads one video
    path per line on stdin and answers each with ``WORKER_PREFIX`` + the clip's meta as JSON on stdout."""
    import sys

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    out_dir, settings = argv if argv is not None else sys.argv[1:3]
    settings = ClipSettings(json.loads(settings))
    for line in sys.stdin:
        if not line.strip():
            continue
        path = Path(line.strip())
        try:
            meta = process_clip(path, out_dir, settings)
        except Exception as e:  # an unexpected failure: reported, not cached (a rerun tries again)
            meta = {"error": f"{type(e).__name__}: {e}", "cached": False}
        sys.stdout.write(WORKER_PREFIX + json.dumps(meta) + "\n")
        sys.stdout.flush()
    return 0
