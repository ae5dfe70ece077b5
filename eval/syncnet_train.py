"""Training a SyncNet here, the offline stand-in for ``syncnet_v2.model`` (labelled "trained-here").

The official weights cannot be downloaded in this project, so LSE-C / LSE-D default to a SyncNet with the
same architecture (``eval.syncnet``) trained on the project's own corpus of face-crop / audio pairs. The
objective is the contrastive loss of the SyncNet paper (Chung & Zisserman 2016, Eq. 1-2):

    E = 1/(2N) sum_n  y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2,   d_n = || v_n - a_n ||_2

with positives (``y = 1``) = the audio window aligned with the 5 frames, negatives = an audio window of
the same clip shifted by at least ``min_negative_shift`` frames. The margin (20) is this project's choice;
the scale of the resulting distances is therefore not the official one, which is why the table labels the
columns ``LSE-C [trained-here]`` / ``LSE-D [trained-here]``.

Inputs are (crops, audio) pairs: ``crops`` uint8 ``[T, 224, 224, 3]`` RGB as made by
``eval.lse.face_crops`` and ``audio`` float ``[N]`` 16 kHz mono, aligned, 25 fps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .lse import (MFCC_PER_FRAME, SAMPLES_PER_FRAME, TRAINED_HERE_FORMAT, TRAINED_HERE_LABEL, face_crops,
                  syncnet_mfcc)
from .syncnet import SyncNet

__all__ = ["SyncTrainConfig", "SyncTrainResult", "SyncPair", "make_pairs", "contrastive_loss", "multi_negative_loss",
           "train_syncnet", "save_trained_syncnet", "CORPUS_TRAIN_DEFAULTS", "corpus_sync_pairs", "sync_report",
           "train_syncnet_on_corpus"]


@dataclass
class SyncTrainConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-4
    margin: float = 20.0  # contrastive margin (project choice, see module docstring)
    min_negative_shift: int = 5  # frames; negatives are at least this far from the aligned window
    positive_fraction: float = 0.5
    seed: int = 0
    device: str = "cpu"
    # > 0: every lip window of a batch is paired with its aligned audio window and this many shifted audio
    # windows of the same clip (the audio tower is ~100x cheaper than the lip tower, so one lip embedding
    # serves many pairs); the loss weighs the positive and the mean negative term equally. 0: one pair per
    # lip window, positive with probability ``positive_fraction`` (the plain SyncNet sampling).
    audio_negatives: int = 0
    max_negative_shift: int | None = None  # frames; negatives at most this far (None: anywhere in the clip)
    # with audio_negatives > 0: "contrastive" (Eq. 1-2 above, margin) or "multiway" (softmax cross-entropy over
    # the negated distances to the 1 + K audio windows, the aligned one the target: the multi-way matching
    # objective of Chung et al. 2019, "Perfect match")
    loss: str = "contrastive"


@dataclass
class SyncPair:
    """One aligned clip: ``crops`` uint8 ``[T, H, W, 3]`` RGB, ``mfcc`` ``[13, M]`` (4 columns per frame)."""

    crops: np.ndarray
    mfcc: np.ndarray
    num_windows: int


@dataclass
class SyncTrainResult:
    model: SyncNet
    losses: list[float] = field(default_factory=list)
    config: SyncTrainConfig | None = None
    label: str = TRAINED_HERE_LABEL


def make_pairs(items) -> list[SyncPair]:
    """Training pairs from ``(crops, audio)`` tuples, ``eval.Clip`` objects, or dicts with ``frames`` and ``audio``
    (e.g. ``sadtalker_lib.data.corpus.load_clip(root, i)``). Clips and dicts are cut into SyncNet crops exactly as
    the evaluation does (dlib face track + ``face_crops``), so training and scoring see the same crops."""
    from .faces import track_faces
    from .video_io import Clip

    pairs = []
    for item in items:
        if isinstance(item, Clip):
            crops, audio = face_crops(item.frames, track_faces(item.frames, name=item.name)), item.require_audio()
        elif isinstance(item, dict):
            crops, audio = face_crops(item["frames"], track_faces(item["frames"])), item["audio"]
        else:
            crops, audio = item
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 [T, H, W, 3], got {crops.dtype} {crops.shape}")
        feats = syncnet_mfcc(audio)
        windows = min(len(crops), len(audio) // SAMPLES_PER_FRAME) - 5
        if windows < 1:
            raise ValueError(f"a pair needs at least 6 aligned frames, got {len(crops)} frames / {len(audio)} samples")
        pairs.append(SyncPair(crops=crops, mfcc=feats, num_windows=windows))
    if not pairs:
        raise ValueError("no training pairs given")
    return pairs


def contrastive_loss(lip: torch.Tensor, aud: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """SyncNet's contrastive loss; ``label`` 1 for in-sync pairs, 0 for off-sync."""
    d = torch.nn.functional.pairwise_distance(lip, aud)
    return 0.5 * (label * d.square() + (1 - label) * torch.clamp(margin - d, min=0).square()).mean()


def _negative_windows(pair: SyncPair, v: int, cfg: SyncTrainConfig) -> list[int]:
    hi = cfg.max_negative_shift
    return [u for u in range(pair.num_windows)
            if abs(u - v) >= cfg.min_negative_shift and (hi is None or abs(u - v) <= hi)]


def _lip_window(pair: SyncPair, v: int) -> torch.Tensor:
    """``[3, 5, H, W]`` float 0..255, BGR as the evaluation feeds it."""
    win = pair.crops[v: v + 5, ..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(win)).float().permute(3, 0, 1, 2)


def _audio_window(pair: SyncPair, a: int) -> torch.Tensor:
    """``[1, 13, 20]`` MFCC window of video frame ``a``."""
    return torch.from_numpy(pair.mfcc[:, a * MFCC_PER_FRAME: a * MFCC_PER_FRAME + 20]).float()[None]


def _multi_batch(pairs: list[SyncPair], rng: np.random.Generator, cfg: SyncTrainConfig):
    """``batch_size`` lip windows ``[B, 3, 5, H, W]``, audio ``[B, 1 + K, 1, 13, 20]`` (column 0 aligned) and a
    mask ``[B, 1 + K]`` of the valid audio columns (clips too short for K negatives repeat none)."""
    k = cfg.audio_negatives
    lips, auds, mask = [], [], []
    for _ in range(cfg.batch_size):
        pair = pairs[rng.integers(len(pairs))]
        v = int(rng.integers(pair.num_windows))
        far = _negative_windows(pair, v, cfg)
        neg = [int(u) for u in rng.choice(far, size=min(k, len(far)), replace=False)] if far else []
        cols = [v] + neg + [v] * (k - len(neg))
        lips.append(_lip_window(pair, v))
        auds.append(torch.stack([_audio_window(pair, a) for a in cols]))
        mask.append(torch.tensor([1.0] * (1 + len(neg)) + [0.0] * (k - len(neg))))
    return torch.stack(lips), torch.stack(auds), torch.stack(mask)


def multi_negative_loss(lip: torch.Tensor, aud: torch.Tensor, mask: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive loss of one lip embedding ``[B, D]`` against its aligned (``aud[:, 0]``) and shifted
    (``aud[:, 1:]``) audio embeddings ``[B, 1 + K, D]``: ``0.5 (d_pos^2 + mean_k max(margin - d_k, 0)^2)``."""
    d = torch.nn.functional.pairwise_distance(lip[:, None].expand_as(aud).reshape(-1, aud.shape[-1]),
                                              aud.reshape(-1, aud.shape[-1])).view(aud.shape[:2])
    pos = d[:, 0].square()
    neg_mask = mask[:, 1:]
    neg = (torch.clamp(margin - d[:, 1:], min=0).square() * neg_mask).sum(1) / neg_mask.sum(1).clamp(min=1)
    return 0.5 * (pos + neg).mean()


def multiway_loss(lip: torch.Tensor, aud: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of picking the aligned audio (``aud[:, 0]``) among ``[B, 1 + K, D]`` with logits ``-d``."""
    d = torch.nn.functional.pairwise_distance(lip[:, None].expand_as(aud).reshape(-1, aud.shape[-1]),
                                              aud.reshape(-1, aud.shape[-1])).view(aud.shape[:2])
    logits = (-d).masked_fill(mask == 0, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(d), dtype=torch.long, device=d.device))


def _batch(pairs: list[SyncPair], rng: np.random.Generator, cfg: SyncTrainConfig):
    lips, auds, labels = [], [], []
    for _ in range(cfg.batch_size):
        pair = pairs[rng.integers(len(pairs))]
        v = int(rng.integers(pair.num_windows))
        a = v
        positive = rng.random() < cfg.positive_fraction
        if not positive:
            far = [u for u in range(pair.num_windows) if abs(u - v) >= cfg.min_negative_shift]
            if far:
                a = int(rng.choice(far))
            else:
                positive = True
        win = pair.crops[v: v + 5, ..., ::-1]  # BGR, as the evaluation feeds it
        lips.append(torch.from_numpy(np.ascontiguousarray(win)).float().permute(3, 0, 1, 2))
        auds.append(torch.from_numpy(pair.mfcc[:, a * MFCC_PER_FRAME: a * MFCC_PER_FRAME + 20]).float()[None])
        labels.append(1.0 if positive else 0.0)
    return torch.stack(lips), torch.stack(auds), torch.tensor(labels)


def train_syncnet(items, config: SyncTrainConfig | None = None, *, model: SyncNet | None = None,
                  progress: bool = True) -> SyncTrainResult:
    """Train a SyncNet on aligned (crops, audio) pairs or Clips; returns the model (eval mode) and losses."""
    cfg = config or SyncTrainConfig()
    if cfg.loss not in ("contrastive", "multiway"):
        raise ValueError(f"loss must be 'contrastive' or 'multiway', got {cfg.loss!r}")
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be at least 2 (BatchNorm)")
    pairs = items if items and isinstance(items[0], SyncPair) else make_pairs(items)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = (model or SyncNet()).to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for _ in tqdm(range(cfg.steps), desc="SyncNet", disable=not progress):
        if cfg.audio_negatives > 0:
            lips, auds, mask = _multi_batch(pairs, rng, cfg)
            b, n = auds.shape[:2]
            aud_emb = model.forward_audio(auds.flatten(0, 1).to(cfg.device)).view(b, n, -1)
            lip_emb = model.forward_lips(lips.to(cfg.device))
            if cfg.loss == "multiway":
                loss = multiway_loss(lip_emb, aud_emb, mask.to(cfg.device))
            else:
                loss = multi_negative_loss(lip_emb, aud_emb, mask.to(cfg.device), cfg.margin)
        else:
            lips, auds, labels = _batch(pairs, rng, cfg)
            loss = contrastive_loss(model.forward_lips(lips.to(cfg.device)),
                                    model.forward_audio(auds.to(cfg.device)), labels.to(cfg.device), cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return SyncTrainResult(model=model.eval(), losses=losses, config=cfg)


def save_trained_syncnet(result: SyncTrainResult | SyncNet, path: str | Path, *, notes: str = "") -> Path:
    """Write a trained-here SyncNet that ``eval.lse.load_syncnet`` reads (label "trained-here")."""
    model = result.model if isinstance(result, SyncTrainResult) else result
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": TRAINED_HERE_FORMAT,
        "label": TRAINED_HERE_LABEL,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "notes": notes,
    }
    torch.save(blob, path)
    return path



# ---------------------------------------------------------------------------------------------
# Training on the project's default corpus (sadtalker_lib.data.corpus)
# ---------------------------------------------------------------------------------------------
#: ``train_syncnet_on_corpus`` defaults: small batches and many cheap audio negatives per lip window, a
#: larger learning rate than the SyncNet paper's, so that the offline stand-in separates in- from off-sync
#: audio within a few hundred steps (1-3 min on 2 CPU cores).
CORPUS_TRAIN_DEFAULTS = dict(batch_size=8, lr=3e-4, margin=20.0, min_negative_shift=4, max_negative_shift=15,
                             audio_negatives=8)


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

    Each clip's frames are resized to ``size`` (default ``eval.video_io.EVAL_SIZE`` = 256, the size the
    evaluation decodes videos at) and cut into the evaluation's 224x224 crops (``face_crops``) around a face
    track: ``boxes="dlib"`` detects the face as the evaluation does (frames where dlib misses fall back to the
    corpus landmarks' box), ``"landmarks"`` uses only the corpus landmarks. ``clips``: positions or ids
    (default all). Returns the pairs and the clip ids.
    """
    import cv2

    from sadtalker_lib.data.corpus import load_clip, load_index

    from .faces import FaceTrack, track_faces
    from .video_io import EVAL_SIZE

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
        (pair,) = make_pairs([(face_crops(frames, track), arrays["audio"])])
        pairs.append(pair)
        ids.append(entry["id"])
    return pairs, ids


@torch.no_grad()
def sync_report(model: SyncNet, pairs: list[SyncPair], *, shift: int = 8, min_negative_shift: int = 4) -> dict:
    """How well ``model`` tells in-sync from off-sync audio on ``pairs`` (e.g. held-out clips).

    Per clip, LSE-D / LSE-C / offset (the ``eval.lse`` protocol, +-15 frames) of the aligned clip and of an
    off-sync copy whose audio lags the video by ``shift`` frames (lip window ``i + shift`` with audio window
    ``i``; its true offset is ``+shift``), and ``pair_accuracy``: over every lip window and every audio window
    ``min_negative_shift`` .. 15 frames away, the fraction where the aligned audio is the closer one (chance 0.5).
    Returns means over clips plus ``per_clip`` lists.
    """
    from .lse import VSHIFT, lse_from_embeddings, offset_distances, sync_embeddings

    model = model.eval()
    rows = []
    for pair in pairs:
        lips, auds = sync_embeddings(model, pair.crops, pair.mfcc, audio_frames=pair.num_windows + 5)
        ins = lse_from_embeddings(lips, auds)
        row = dict(lse_d_in=ins.distance, lse_c_in=ins.confidence, offset_in=ins.offset)
        if len(lips) > shift:
            off = lse_from_embeddings(lips[shift:], auds[:-shift])
            row.update(lse_d_off=off.distance, lse_c_off=off.confidence, offset_off=off.offset)
        d = offset_distances(lips, auds, VSHIFT).numpy()  # [N, 31]; column VSHIFT is the aligned audio
        n = len(lips)
        wins = []
        for k in range(-VSHIFT, VSHIFT + 1):
            if abs(k) < min_negative_shift:
                continue
            i = np.arange(max(0, -k), min(n, n - k))  # windows whose shifted audio lies inside the clip
            wins.append(d[i, VSHIFT] < d[i, VSHIFT + k])
        row["pair_accuracy"] = float(np.concatenate(wins).mean()) if wins else float("nan")
        rows.append(row)
    keys = sorted({k for r in rows for k in r})
    out = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
    out["per_clip"] = rows
    out["shift"] = shift
    return out


def train_syncnet_on_corpus(corpus_dir, out_path=None, steps: int = 300, seed: int = 0, progress: bool = True, *,
                            heldout: int | None = None, shift: int = 8, boxes: str = "dlib",
                            config: SyncTrainConfig | None = None) -> tuple[Path, dict]:
    """Train the trained-here SyncNet on a corpus folder and save it; returns ``(path, history)``.

    * ``corpus_dir``: a folder written by ``sadtalker_lib.data.corpus.build_default_corpus`` (or
      ``build_video_corpus``); its last ``heldout`` clips (default: a quarter, at least one when there are two
      or more) are kept out of training and used to measure sync before and after (``sync_report``).
    * ``out_path``: where to save (default ``eval.weights.default_weight_path("syncnet_trained_here")``, where
      ``eval.lse.load_syncnet`` / ``eval.evaluate`` look for it).
    * ``steps`` / ``seed`` / ``config``: training length, seed, and any other ``SyncTrainConfig`` (default
      ``CORPUS_TRAIN_DEFAULTS``: 8 lip windows x (1 aligned + 8 shifted audio windows) per step).
    * ``shift``: frames by which the held-out off-sync copies are shifted.

    ``history``: ``loss`` (per step), ``before`` / ``after`` (``sync_report`` on the held-out clips; None
    without held-out clips), ``train_clips``, ``heldout_clips``, ``seconds``, ``config``, ``path``.
    """
    import json
    import time

    from sadtalker_lib.data.corpus import load_index

    from .weights import default_weight_path

    n = len(load_index(corpus_dir)["clips"])
    if heldout is None:
        heldout = max(1, round(n / 4)) if n >= 2 else 0
    if not 0 <= heldout < n:
        raise ValueError(f"heldout must leave at least one of the {n} clips for training, got {heldout}")
    cfg = config or SyncTrainConfig(**CORPUS_TRAIN_DEFAULTS)
    cfg.steps, cfg.seed = int(steps), int(seed)
    t0 = time.perf_counter()
    pairs, ids = corpus_sync_pairs(corpus_dir, boxes=boxes, progress=progress)
    train_pairs, test_pairs = pairs[: n - heldout], pairs[n - heldout:]
    torch.manual_seed(cfg.seed)
    model = SyncNet()
    before = sync_report(model, test_pairs, shift=shift) if test_pairs else None
    result = train_syncnet(train_pairs, cfg, model=model, progress=progress)
    after = sync_report(result.model, test_pairs, shift=shift) if test_pairs else None
    seconds = time.perf_counter() - t0
    path = Path(out_path) if out_path is not None else default_weight_path("syncnet_trained_here")
    summary = dict(corpus=str(corpus_dir), train_clips=ids[: n - heldout], heldout_clips=ids[n - heldout:],
                   steps=cfg.steps, seed=cfg.seed,
                   heldout_after={k: v for k, v in (after or {}).items() if k != "per_clip"})
    save_trained_syncnet(result, path, notes=json.dumps(summary))
    history = dict(loss=result.losses, before=before, after=after, train_clips=ids[: n - heldout],
                   heldout_clips=ids[n - heldout:], seconds=seconds, config=asdict(cfg), path=str(path))
    return path, history
