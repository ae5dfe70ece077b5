"""The on-disk corpus format, once: the only code that reads or writes a corpus folder.

A corpus folder (written by ``default.py`` or ``videos.py``, read by ``dataset.py`` and every trainer)::

    root/corpus.json        the index: format, version, kind, fps, sample_rate, size, styles, identities,
                            builder settings, and one entry per clip (id, file, n_frames, duration_s, style_id,
                            identity_id, ... source-specific fields)
    root/clip_0000.npz      one file per clip (numpy, no pickles; the entry's ``file`` is its path relative to root,
                            e.g. ``clips/<video stem>.npz`` in a video corpus):
        frames     uint8   [T, S, S, 3]   25 fps RGB, a square face crop (rendered portrait or video crop)
        audio      float32 [T * 640]      16 kHz mono, cropped to whole video frames (official crop_pad_audio)
        mel        float32 [T, 1, 80, 16] one 0.2 s mel window per frame (sadtalker_lib.audio, official get_data)
        landmarks  float32 [T, 68, 2]     (x, row) pixels of ``frames``
        coeffs     float32 [T, 70]        [exp 64, angle 3 (pitch, yaw, roll), trans 3] (``coeffs.py``)
        exp_lip    float32 [T, 64]        lip-only expression (the distillation target of paper Eq. 3)
        blink      float32 [T]            eye closure in [0, 1] (1 = closed)
        phonemes   str     [P]            IPA phonemes (empty for videos) with
        phoneme_ms float32 [P, 2]         their start / end times in ms
      optional (``OPTIONAL_CLIP_KEYS``; written when the builder has them, e.g. ``videos.py``):
        id_coeff   float32 [80]           the clip's shared fitted identity alpha
        eye_ratio  float32 [T]            eye aspect ratio R (supp. Eq. 4-6) of ``landmarks``
        face_descriptors float32 [K, 128] dlib face descriptors of K evenly spaced frames (who is in the clip)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...audio import DEFAULT_CONFIG, crop_to_frames, mel_windows, melspectrogram
from ...paths import partial_path

__all__ = [
    "FORMAT", "FORMAT_VERSION", "INDEX_FILE", "CLIP_KEYS", "FPS", "SAMPLE_RATE", "SAMPLES_PER_FRAME",
    "is_corpus", "clip_file", "save_clip", "write_index", "make_index", "load_index", "load_clip", "select_clips",
    "audio_fields", "OPTIONAL_CLIP_KEYS",
]

FORMAT, FORMAT_VERSION = "sadtalker-lab-corpus", 1
INDEX_FILE = "corpus.json"
CLIP_KEYS = ("frames", "audio", "mel", "landmarks", "coeffs", "exp_lip", "blink", "phonemes", "phoneme_ms")
OPTIONAL_CLIP_KEYS = ("id_coeff", "eye_ratio", "face_descriptors")  # saved when given; old corpora lack them
FPS = DEFAULT_CONFIG.fps  # 25: the official frame rate
SAMPLE_RATE = DEFAULT_CONFIG.sample_rate  # 16 kHz
SAMPLES_PER_FRAME = DEFAULT_CONFIG.samples_per_frame  # 640 = 16 kHz / 25 fps
_PER_FRAME_KEYS = ("frames", "mel", "landmarks", "exp_lip", "blink")  # first axis = coeffs' T


def is_corpus(root: str | os.PathLike) -> bool:
    """True when ``root`` is a folder holding a corpus index (not checked further; :func:`load_index` checks)."""
    return (Path(root) / INDEX_FILE).is_file()


def clip_file(clip_id: str) -> str:
    """File name of a clip inside the corpus folder (``clip_0000`` -> ``clip_0000.npz``)."""
    return f"{clip_id}.npz"


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def save_clip(root: str | os.PathLike, clip_id: str, arrays: dict[str, np.ndarray]) -> str:
    """Write one clip's arrays (all of ``CLIP_KEYS``, per-frame ones of equal length, and any of
    ``OPTIONAL_CLIP_KEYS`` given) atomically.

    Returns the file name to store in the index entry.
    """
    missing = [k for k in CLIP_KEYS if k not in arrays]
    assert not missing, f"clip arrays missing {missing}"
    t = arrays["coeffs"].shape[0]
    for k in _PER_FRAME_KEYS:
        assert arrays[k].shape[0] == t, f"{k} has {arrays[k].shape[0]} frames, coeffs has {t}"
    name = clip_file(clip_id)
    path = Path(root) / name
    tmp = partial_path(path)
    if "eye_ratio" in arrays:
        assert arrays["eye_ratio"].shape[0] == t, f"eye_ratio has {arrays['eye_ratio'].shape[0]} frames, coeffs {t}"
    keys = CLIP_KEYS + tuple(k for k in OPTIONAL_CLIP_KEYS if k in arrays)
    with open(tmp, "wb") as f:  # a file object: numpy appends ".npz" to a name without it
        np.savez_compressed(f, **{k: arrays[k] for k in keys})
    os.replace(tmp, path)
    return name


def make_index(kind: str, size: int, **fields) -> dict:
    """The index dict of a corpus of ``kind`` ("default", "video", ...): the format header, then ``fields``
    (source-specific settings and ``clips``, the list of clip entries, each with at least id, file, n_frames)."""
    assert isinstance(fields.get("clips"), list), "an index needs its list of clip entries"
    return dict(format=FORMAT, version=FORMAT_VERSION, kind=kind, fps=FPS, sample_rate=SAMPLE_RATE, size=int(size),
                **fields)


def write_index(root: str | os.PathLike, index: dict) -> Path:
    """Write ``corpus.json`` atomically; returns its path."""
    root = Path(root)
    path = root / INDEX_FILE
    tmp = partial_path(path)
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def load_index(root: str | os.PathLike) -> dict:
    """The ``corpus.json`` of a corpus folder (checked to be this format)."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX_FILE} in {root}: build a corpus with build_default_corpus or "
                                "build_video_corpus first")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index (format={index.get('format')!r})")
    if index.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {index['version']}; this code reads up to {FORMAT_VERSION}")
    return index


def select_clips(entries: list[dict], clips=None) -> list[dict]:
    """Index entries chosen by position or id (``clips`` None: all of them)."""
    if clips is None:
        return list(entries)
    by_id = {c["id"]: c for c in entries}
    return [entries[c] if isinstance(c, (int, np.integer)) else by_id[c] for c in clips]


def load_clip(root: str | os.PathLike, clip: int | str | dict) -> dict[str, np.ndarray]:
    """All arrays of one clip (by position in the index, clip id, or index entry)."""
    root = Path(root)
    if not isinstance(clip, dict):
        clip = select_clips(load_index(root)["clips"], [clip])[0]
    with np.load(root / clip["file"], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# The audio fields of a clip
# ---------------------------------------------------------------------------------------------
def audio_fields(samples: np.ndarray, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """16 kHz samples -> (``audio`` cropped to whole frames [T * 640], ``mel`` windows [T, 1, 80, 16], T)."""
    wav, frames = crop_to_frames(np.asarray(samples, np.float32))
    if max_frames is not None and frames > max_frames:
        frames = int(max_frames)
        wav = wav[: int(frames * SAMPLES_PER_FRAME)]
    if frames == 0:
        raise ValueError(f"audio of {len(samples)} samples is shorter than one video frame "
                         f"({SAMPLES_PER_FRAME:g} samples)")
    windows = mel_windows(melspectrogram(wav), frames)
    return wav.astype(np.float32), windows, frames
