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

__all__ = ["SyncTrainConfig", "SyncTrainResult", "SyncPair", "make_pairs", "contrastive_loss", "train_syncnet",
           "save_trained_syncnet"]


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
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be at least 2 (BatchNorm)")
    pairs = items if items and isinstance(items[0], SyncPair) else make_pairs(items)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = (model or SyncNet()).to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for _ in tqdm(range(cfg.steps), desc="SyncNet", disable=not progress):
        lips, auds, labels = _batch(pairs, rng, cfg)
        loss = contrastive_loss(model.forward_lips(lips.to(cfg.device)), model.forward_audio(auds.to(cfg.device)),
                                labels.to(cfg.device), cfg.margin)
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

