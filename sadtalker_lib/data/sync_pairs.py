"""SyncNet training pairs: aligned face-crop / audio clips cut into 5-frame lip windows and MFCC windows.

What ``train/syncnet.py`` samples from. Inputs are (crops, audio) pairs: ``crops`` uint8 ``[T, 224, 224, 3]`` RGB as
made by ``metrics.lse.face_crops`` and ``audio`` float ``[N]`` 16 kHz mono, aligned, 25 fps; or corpus folders
(:func:`corpus_sync_pairs`), cut exactly as the LSE evaluation cuts videos. The samplers take any object with the
sampling fields of ``train.syncnet.SyncTrainConfig`` (batch_size, audio_negatives, min/max_negative_shift,
positive_fraction) and a numpy generator (the loop's ``step_rng(seed, step)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..metrics.lse import MFCC_PER_FRAME, SAMPLES_PER_FRAME, face_crops, syncnet_mfcc

__all__ = ["WINDOW", "SyncPair", "make_pairs", "corpus_sync_pairs", "MouthTargets", "multi_batch", "plain_batch"]

WINDOW = 5  # video frames per SyncNet window


@dataclass
class SyncPair:
    """One aligned clip: ``crops`` uint8 ``[T, H, W, 3]`` RGB, ``mfcc`` ``[13, M]`` (4 columns per frame),
    ``mouth`` optional ``[T, k]`` per-frame mouth coefficients (the mouth-state term's targets)."""

    crops: np.ndarray
    mfcc: np.ndarray
    num_windows: int
    mouth: np.ndarray | None = None
    name: str = ""


def _corpus_mouth(item: dict) -> np.ndarray | None:
    if "exp_lip" not in item:
        return None
    from .corpus import MOUTH_DIMS

    return np.asarray(item["exp_lip"], np.float32)[:, list(MOUTH_DIMS)]


def make_pairs(items) -> list[SyncPair]:
    """Training pairs from ``(crops, audio)`` / ``(crops, audio, mouth)`` tuples, ``metrics.Clip`` objects, or dicts
    with ``frames`` and ``audio`` (e.g. ``sadtalker_lib.data.corpus.load_clip(root, i)``, whose ``exp_lip``
    mouth directions become ``mouth``). Clips and dicts are cut into SyncNet crops exactly as the evaluation
    does (dlib face track + ``face_crops``), so training and scoring see the same crops."""
    from ..metrics.faces import track_faces
    from ..metrics.video_io import Clip

    pairs = []
    for item in items:
        mouth, name = None, ""
        if isinstance(item, Clip):
            crops, audio = face_crops(item.frames, track_faces(item.frames, name=item.name)), item.require_audio()
            name = item.name
        elif isinstance(item, dict):
            crops, audio = face_crops(item["frames"], track_faces(item["frames"])), item["audio"]
            mouth = _corpus_mouth(item)
        elif len(item) == 3:
            crops, audio, mouth = item
        else:
            crops, audio = item
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 [T, H, W, 3], got {crops.dtype} {crops.shape}")
        if mouth is not None:
            mouth = np.asarray(mouth, np.float32)
            if mouth.ndim != 2 or len(mouth) < len(crops):
                raise ValueError(f"mouth must be [T, k] with T >= {len(crops)} frames, got {mouth.shape}")
        feats = syncnet_mfcc(audio)
        windows = min(len(crops), len(audio) // SAMPLES_PER_FRAME) - WINDOW
        if windows < 1:
            raise ValueError(f"a pair needs at least 6 aligned frames, got {len(crops)} frames / {len(audio)} samples")
        pairs.append(SyncPair(crops=crops, mfcc=feats, num_windows=windows, mouth=mouth, name=name))
    if not pairs:
        raise ValueError("no training pairs given")
    return pairs


def _lip_window(pair: SyncPair, v: int) -> torch.Tensor:
    """``[3, 5, H, W]`` float 0..255, BGR as the evaluation feeds it."""
    win = pair.crops[v: v + WINDOW, ..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(win)).float().permute(3, 0, 1, 2)


def _audio_window(pair: SyncPair, a: int) -> torch.Tensor:
    """``[1, 13, 20]`` MFCC window of video frame ``a`` (``SyncNetInstance``: columns ``4a .. 4a + 19``)."""
    return torch.from_numpy(pair.mfcc[:, a * MFCC_PER_FRAME: a * MFCC_PER_FRAME + 20]).float()[None]


class MouthTargets:
    """Mouth coefficients of a window's 5 frames divided by their std over the training pairs, ``[5 k]`` (dims
    constant in training dropped). Not centred: the origin stays the neutral mouth (all coefficients 0), so the
    zero rows ``calc_pdist`` pads the audio with read as "mouth at rest", not as "the average mouth"."""

    def __init__(self, pairs: list[SyncPair], embedding_dim: int, anchor: float = 0.0):
        if any(p.mouth is None for p in pairs):
            raise ValueError("mouth_weight > 0 needs SyncPair.mouth for every pair (corpus clips have exp_lip)")
        allm = np.concatenate([p.mouth for p in pairs])
        std = allm.std(0)
        self.keep = std > 1e-6
        if not self.keep.any():
            raise ValueError("the mouth coefficients never change in the training pairs")
        self.mean, self.std = allm.mean(0)[self.keep], std[self.keep]
        self.anchor = float(anchor)
        self.dim = WINDOW * int(self.keep.sum()) + (1 if self.anchor else 0)
        if self.dim > embedding_dim:
            raise ValueError(f"{self.dim} mouth targets exceed the embedding size {embedding_dim}")

    def window(self, pair: SyncPair, v: int) -> torch.Tensor:
        m = (pair.mouth[v: v + WINDOW, self.keep] / self.std).reshape(-1)
        if self.anchor:
            m = np.append(m, self.anchor)
        return torch.from_numpy(np.ascontiguousarray(m, np.float32))


def _negative_windows(pair: SyncPair, v: int, cfg) -> list[int]:
    hi = cfg.max_negative_shift
    return [u for u in range(pair.num_windows)
            if abs(u - v) >= cfg.min_negative_shift and (hi is None or abs(u - v) <= hi)]


def multi_batch(pairs: list[SyncPair], rng: np.random.Generator, cfg,
                 mouth: MouthTargets | None = None):
    """``batch_size`` lip windows ``[B, 3, 5, H, W]``, audio ``[B, 1 + K, 1, 13, 20]`` (column 0 aligned), a mask
    ``[B, 1 + K]`` of the valid audio columns (a clip too short for K negatives repeats the aligned one,
    masked), and the mouth targets ``[B, 5 k]`` / ``[B, 1 + K, 5 k]`` (None without ``mouth``)."""
    k = cfg.audio_negatives
    lips, auds, mask, y_lip, y_aud = [], [], [], [], []
    for _ in range(cfg.batch_size):
        pair = pairs[rng.integers(len(pairs))]
        v = int(rng.integers(pair.num_windows))
        far = _negative_windows(pair, v, cfg)
        neg = [int(u) for u in rng.choice(far, size=min(k, len(far)), replace=False)] if far else []
        cols = [v] + neg + [v] * (k - len(neg))
        lips.append(_lip_window(pair, v))
        auds.append(torch.stack([_audio_window(pair, a) for a in cols]))
        mask.append(torch.tensor([1.0] * (1 + len(neg)) + [0.0] * (k - len(neg))))
        if mouth is not None:
            y_lip.append(mouth.window(pair, v))
            y_aud.append(torch.stack([mouth.window(pair, a) for a in cols]))
    targets = (torch.stack(y_lip), torch.stack(y_aud)) if mouth is not None else None
    return torch.stack(lips), torch.stack(auds), torch.stack(mask), targets


def plain_batch(pairs: list[SyncPair], rng: np.random.Generator, cfg):
    """Plain SyncNet sampling: one (lip, audio) pair per lip window, positive with ``positive_fraction``."""
    lips, auds, labels = [], [], []
    for _ in range(cfg.batch_size):
        pair = pairs[rng.integers(len(pairs))]
        v = int(rng.integers(pair.num_windows))
        a = v
        positive = rng.random() < cfg.positive_fraction
        if not positive:
            far = _negative_windows(pair, v, cfg)
            if far:
                a = int(rng.choice(far))
            else:
                positive = True
        lips.append(_lip_window(pair, v))
        auds.append(_audio_window(pair, a))
        labels.append(1.0 if positive else 0.0)
    return torch.stack(lips), torch.stack(auds), torch.tensor(labels)


def _box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """A dlib-like face box ``[T, 4]`` (x1, y1, x2, y2) from 68 landmarks: the jaw's width, square, from just
    above the brows' lower edge down to the chin (dlib's frontal detector frames about that)."""
    x1, x2 = landmarks[:, :17, 0].min(1), landmarks[:, :17, 0].max(1)
    y2 = landmarks[:, 8, 1]
    side = x2 - x1
    return np.stack([x1, y2 - side, x2, y2], 1)


def corpus_sync_pairs(corpus_dir, clips=None, *, size: int | None = None, boxes: str = "dlib",
                      progress: bool = False) -> tuple[list[SyncPair], list[str]]:
    """SyncNet training pairs from a corpus folder (``build_default_corpus`` / ``build_video_corpus``).

    Each clip's frames are resized to ``size`` (default ``metrics.video_io.EVAL_SIZE`` = 256, the size the
    evaluation decodes videos at) and cut into the evaluation's 224x224 crops (``face_crops``) around a face
    track: ``boxes="dlib"`` detects the face as the evaluation does (frames where dlib misses fall back to the
    corpus landmarks' box), ``"landmarks"`` uses only the corpus landmarks. ``clips``: positions or ids
    (default all). Returns the pairs and the clip ids.
    """
    import cv2

    from ..metrics.faces import FaceTrack, track_faces
    from ..metrics.video_io import EVAL_SIZE
    from .corpus import load_clip, load_index

    if boxes not in ("dlib", "landmarks"):
        raise ValueError(f"boxes must be 'dlib' or 'landmarks', got {boxes!r}")
    size = EVAL_SIZE if size is None else int(size)
    entries = load_index(corpus_dir)["clips"]
    if clips is not None:
        by_id = {c["id"]: c for c in entries}
        entries = [entries[c] if isinstance(c, (int, np.integer)) else by_id[c] for c in clips]
    pairs, ids = [], []
    for entry in tqdm(entries, desc="SyncNet crops", disable=not progress):
        arrays = load_clip(corpus_dir, entry)
        frames, lm = arrays["frames"], arrays["landmarks"].astype(np.float64)
        scale = size / frames.shape[1]
        if frames.shape[1] != size:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            frames = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
            lm = lm * scale
        lm_box = _box_from_landmarks(lm)
        if boxes == "dlib":
            track = track_faces(frames, name=entry["id"])
            missing = ~track.found
            track.boxes[missing], track.landmarks[missing] = lm_box[missing], lm[missing]
            track.found[:] = True
        else:
            track = FaceTrack(boxes=lm_box, landmarks=lm, found=np.ones(len(frames), bool), name=entry["id"])
        (pair,) = make_pairs([(face_crops(frames, track), arrays["audio"], _corpus_mouth(arrays))])
        pair.name = entry["id"]
        pairs.append(pair)
        ids.append(entry["id"])
    return pairs, ids
