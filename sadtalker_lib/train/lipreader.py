"""A lip-reading STAND-IN for the lip-reading loss L_read (paper supp. Eq. 9), trained here.

The paper feeds 5 rendered mouth crops of the generated 3D face to a pretrained visual speech recogniser
(Ma et al., ref. [24]) and compares its character logits C_p with those of an audio speech recogniser on the
ground-truth audio, C_gt. Neither network ships with SadTalker. This module is the offline stand-in:

* what it reads: the 20 mouth landmarks (48-67) of the projected 3D face (the differentiable R_d, so the loss
  reaches ExpNet), centred on the mouth and scaled by the eye-corner distance, over a window of frames;
* what it predicts: one of :data:`VISEME_CLASSES` per frame (lip shapes: silence, open / mid / spread /
  rounded vowels, bilabial, labiodental, other consonants) instead of characters;
* its "audio" side C_gt: the viseme classes of the phonemes in the speech (eSpeak NG timings in the default
  corpus), i.e. labels derived from the audio, as the audio recogniser's output is in the paper.

It is trained by :func:`train_lipreader` on the teacher's lip-only coefficients and saved with
``source="trained-here"``; :func:`load_lipreader` reads a file in the same format, so weights trained
elsewhere on a real corpus (``source`` set by whoever trained them) plug in unchanged. A real image-based
lip-reading network (the paper's [24]) would need a mouth-crop renderer in the loop; that is not provided.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VISEME_CLASSES",
    "MOUTH_LANDMARKS",
    "viseme_class_of",
    "frame_viseme_labels",
    "mouth_features",
    "LipReaderConfig",
    "LipReader",
    "train_lipreader",
    "lipreader_accuracy",
    "save_lipreader",
    "load_lipreader",
]

MOUTH_LANDMARKS = tuple(range(48, 68))  # iBUG-68 outer (48-59) and inner (60-67) lips
EYE_CORNERS = (36, 45)  # outer eye corners: the face scale that normalises the mouth shape

# Lip-visible classes (what a lip reader can tell apart); viseme names are those of data/visemes.py.
VISEME_CLASSES: tuple[str, ...] = ("silence", "open", "mid", "spread", "rounded", "bilabial", "labiodental", "other")
_CLASS_OF_VISEME = {
    "rest": "silence",
    "open": "open", "open-mid": "open",
    "mid": "mid",
    "close-spread": "spread",
    "close-rounded-front": "rounded", "mid-rounded-front": "rounded", "mid-rounded-back": "rounded",
    "close-rounded-back": "rounded", "labial-velar": "rounded", "postalveolar": "rounded",
    "retroflex-approximant": "rounded",
    "bilabial": "bilabial", "bilabial-fricative": "bilabial",
    "labiodental": "labiodental",
}


def viseme_class_of(phoneme: str) -> int:
    """IPA phoneme (eSpeak NG name, "_" = pause) -> index in :data:`VISEME_CLASSES` (its first viseme decides)."""
    from ..data.visemes import split_phoneme

    v = split_phoneme(phoneme, 0.0, 1.0)[0][0]
    return VISEME_CLASSES.index(_CLASS_OF_VISEME.get(v.name, "other"))


def frame_viseme_labels(phonemes, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Per-frame class ids int64 [T]: the class of the phoneme at each frame's centre (silence where none)."""
    labels = np.zeros(n_frames, np.int64)
    centres = (np.arange(n_frames) + 0.5) * 1000.0 / fps
    for name, start, end in phonemes:
        sel = (centres >= float(start)) & (centres < float(end))
        if sel.any():
            labels[sel] = viseme_class_of(name)
    return labels


def mouth_features(landmarks: torch.Tensor) -> torch.Tensor:
    """Landmarks [..., 68, 2] -> mouth shape [..., 40]: lips minus their centroid, over the eye-corner distance."""
    mouth = landmarks[..., list(MOUTH_LANDMARKS), :]
    scale = (landmarks[..., EYE_CORNERS[1], :] - landmarks[..., EYE_CORNERS[0], :]).norm(dim=-1)  # [...]
    shape = (mouth - mouth.mean(dim=-2, keepdim=True)) / scale[..., None, None].clamp_min(1e-6)
    return shape.flatten(-2)


@dataclass
class LipReaderConfig:
    """Sizes of the stand-in lip reader (a 3-layer temporal CNN over mouth shapes)."""

    in_dim: int = 2 * len(MOUTH_LANDMARKS)
    hidden: int = 64
    num_classes: int = len(VISEME_CLASSES)
    kernel: int = 3


class LipReader(nn.Module):
    """Mouth shapes [B, T, 40] -> viseme logits [B, T, K] (C_p of Eq. 9); 'same' padding along time."""

    def __init__(self, config: LipReaderConfig | None = None):
        super().__init__()
        self.config = c = config or LipReaderConfig()
        p = c.kernel // 2
        self.net = nn.Sequential(
            nn.Conv1d(c.in_dim, c.hidden, c.kernel, padding=p), nn.ReLU(),
            nn.Conv1d(c.hidden, c.hidden, c.kernel, padding=p), nn.ReLU(),
            nn.Conv1d(c.hidden, c.num_classes, 1),
        )
        # fixed input normalisation (set from the training data by train_lipreader; part of the state dict):
        # per-coordinate mean, ONE overall scale (per-coordinate scales would blow up coordinates that barely
        # move in the training data when a generated mouth moves them)
        self.register_buffer("mean", torch.zeros(c.in_dim))
        self.register_buffer("std", torch.ones(()))
        self.source = "untrained"

    def forward(self, mouth: torch.Tensor) -> torch.Tensor:
        x = ((mouth - self.mean) / self.std).transpose(1, 2)  # [B, 40, T]
        return self.net(x).transpose(1, 2)  # [B, T, K]


def train_lipreader(features: torch.Tensor, labels: torch.Tensor, *, steps: int = 400, batch_size: int = 64,
                    lr: float = 3e-3, seed: int = 0, config: LipReaderConfig | None = None) -> LipReader:
    """Fit a :class:`LipReader` on mouth shapes [N, T, 40] (from the teacher's lip-only coefficients) and their
    audio-derived viseme labels [N, T]. Deterministic for a seed; a few seconds on a CPU."""
    if features.ndim != 3 or labels.shape != features.shape[:2]:
        raise ValueError(f"features must be [N, T, 40] and labels [N, T]; got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LipReader(config)
    flat = features.reshape(-1, features.shape[-1])
    model.mean.copy_(flat.mean(0))
    model.std.copy_((flat - flat.mean(0)).pow(2).mean().sqrt().clamp_min(1e-6))
    # class weights: silence and "other" dominate speech; weight rarer lip shapes up (inverse sqrt frequency)
    counts = torch.bincount(labels.reshape(-1), minlength=model.config.num_classes).float()
    weight = (counts.sum() / counts.clamp_min(1)).sqrt()
    weight = weight / weight.mean()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = features.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        logits = model(features[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[idx].reshape(-1), weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.source = "trained-here"
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def lipreader_accuracy(model: LipReader, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Frame accuracy of the lip reader's argmax against labels [N, T]."""
    return float((model(features).argmax(-1) == labels).float().mean())


def save_lipreader(model: LipReader, path: str | os.PathLike, source: str | None = None) -> Path:
    """Write ``{"state_dict", "config", "classes", "source"}`` (weights-only loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = model.config
    torch.save({"state_dict": model.state_dict(), "config": [c.in_dim, c.hidden, c.num_classes, c.kernel],
                "classes": list(VISEME_CLASSES), "source": source or model.source}, path)
    return path


def load_lipreader(path: str | os.PathLike) -> LipReader:
    """Read a lip reader written by :func:`save_lipreader` (e.g. weights trained on a real corpus); frozen, eval mode.

    ``model.source`` tells where the weights came from ("trained-here" for the stand-in of this project).
    """
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise ValueError(f"{path} is not a lip-reader file written by save_lipreader")
    if list(obj.get("classes", VISEME_CLASSES)) != list(VISEME_CLASSES):
        raise ValueError(f"{path} predicts classes {obj.get('classes')}, expected {list(VISEME_CLASSES)}")
    in_dim, hidden, k, kernel = obj["config"]
    model = LipReader(LipReaderConfig(in_dim=in_dim, hidden=hidden, num_classes=k, kernel=kernel))
    model.load_state_dict(obj["state_dict"])
    model.source = str(obj.get("source", "unknown"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
