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

It is trained by :func:`train_lipreader` (the :class:`LipReaderStage` on ``train/loop.py``; ``sadtalker-lab train
lipreader`` from a corpus) on the teacher's lip-only coefficients and saved with
``source="trained-here"``; :func:`load_lipreader` reads a file in the same format, so weights trained
elsewhere on a real corpus (``source`` set by whoever trained them) plug in unchanged. A real image-based
lip-reading network (the paper's [24]) would need a mouth-crop renderer in the loop; that is not provided.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..landmarks import EYE_CORNERS, MOUTH_LANDMARKS
from .loop import RunContext, Stage, StepContext, TrainConfig

__all__ = [
    "VISEME_CLASSES",
    "MOUTH_LANDMARKS",
    "viseme_class_of",
    "frame_viseme_labels",
    "mouth_features",
    "LipReaderConfig",
    "LipReader",
    "LipReaderTrainConfig",
    "LipReaderStage",
    "train_lipreader",
    "cli_stage",
    "lipreader_accuracy",
    "save_lipreader",
    "load_lipreader",
]

LIPREADER_FILE = "lipreader_trained-here.pth"  # the file a run writes (and an ExpNet run reuses on resume)

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


@dataclass
class LipReaderTrainConfig(TrainConfig):
    """Lip-reader training (a project stand-in, no paper values): Adam lr 3e-3, 64 windows per step, 400 steps.

    The loss is the class-weighted cross-entropy averaged over frames (weights: inverse square-root class frequency,
    mean 1; silence and "other" dominate speech). arch: the network sizes."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    eval_every: int = 100
    checkpoint_every: int = 0
    arch: LipReaderConfig = field(default_factory=LipReaderConfig)

    @classmethod
    def cpu(cls, **changes) -> "LipReaderTrainConfig":
        """The defaults (a few seconds on a CPU), with checkpoints every 100 steps."""
        return cls(**{**dict(checkpoint_every=100), **changes})

    @classmethod
    def tiny(cls, **changes) -> "LipReaderTrainConfig":
        """Smoke preset: 6 steps of 16 windows, checkpoints every 2 steps."""
        base = dict(steps=6, batch_size=16, eval_every=3, checkpoint_every=2, progress=False)
        return cls(**{**base, **changes})


class LipReaderStage(Stage):
    """The lip reader on mouth shapes [N, T, 40] and viseme labels [N, T] (held-out pair optional: accuracy)."""

    name, stem = "lip reader", "lipreader"

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, config: LipReaderTrainConfig | None = None,
                 heldout: tuple[torch.Tensor, torch.Tensor] | None = None):
        if features.ndim != 3 or labels.shape != features.shape[:2]:
            raise ValueError(f"features must be [N, T, 40] and labels [N, T]; got {tuple(features.shape)}, "
                             f"{tuple(labels.shape)}")
        self.features, self.labels, self.heldout = features, labels, heldout
        self.config = config or LipReaderTrainConfig()

    def build(self, ctx: RunContext) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            model = LipReader(self.config.arch)
        flat = self.features.reshape(-1, self.features.shape[-1])
        model.mean.copy_(flat.mean(0))
        model.std.copy_((flat - flat.mean(0)).pow(2).mean().sqrt().clamp_min(1e-6))
        counts = torch.bincount(self.labels.reshape(-1), minlength=model.config.num_classes).float()
        weight = (counts.sum() / counts.clamp_min(1)).sqrt()
        self.weight = (weight / weight.mean()).to(ctx.device)
        self.model = model
        self.modules = {"lipreader": model}
        self.train_modules = {"lipreader": model}
        self.optimizers = {"main": torch.optim.Adam(model.parameters(), lr=self.config.lr,
                                                    betas=tuple(self.config.adam_betas))}

    def num_examples(self) -> int:
        return len(self.features)

    def _loss(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        return (self.weight[y.reshape(-1)] * ce).mean()  # a plain mean: equal over any split of the batch

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        x, y = self.features[ctx.indices].to(ctx.device), self.labels[ctx.indices].to(ctx.device)
        loss = self._loss(ctx.module("lipreader"), x, y)
        ctx.update("main", loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.heldout is None:
            return None
        x, y = (t.to(ctx.device) for t in self.heldout)
        return {"loss": float(self._loss(self.model, x, y)), "accuracy": lipreader_accuracy(self.model, x, y)}

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_lipreader(self.model, out_dir / LIPREADER_FILE, source="trained-here")


def _frozen(model: LipReader) -> LipReader:
    model.eval()
    model.source = "trained-here"
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def train_lipreader(features: torch.Tensor, labels: torch.Tensor, *, steps: int = 400, batch_size: int = 64,
                    lr: float = 3e-3, seed: int = 0, config: LipReaderConfig | None = None,
                    out_dir: str | os.PathLike | None = None) -> LipReader:
    """Fit a :class:`LipReader` on mouth shapes [N, T, 40] (from the teacher's lip-only coefficients) and their
    audio-derived viseme labels [N, T]. Deterministic for a seed; a few seconds on a CPU. ``out_dir``: also keep the
    run's log / checkpoints / the exported reader there (default: nothing written)."""
    from accelerate import PartialState

    from .loop import run

    world = PartialState().num_processes  # inside a multi-process run (an ExpNet stage): split evenly
    cfg = LipReaderTrainConfig(steps=steps, batch_size=max(world, min(batch_size, len(features)) // world * world),
                               lr=lr, seed=seed, progress=False, arch=config or LipReaderConfig(), mixed_precision="no")
    stage = LipReaderStage(features, labels, cfg)
    run(stage, out_dir)
    return _frozen(stage.model.cpu())


@torch.no_grad()
def lipreader_accuracy(model: LipReader, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Frame accuracy of the lip reader's argmax against labels [N, T]."""
    return float((model(features).argmax(-1) == labels).float().mean())


def save_lipreader(model: LipReader, path: str | os.PathLike, source: str | None = None) -> Path:
    """Write ``{"state_dict", "config", "classes", "source"}`` (weights-only loadable)."""
    from ..official.io import write_checkpoint

    c = model.config
    return write_checkpoint({"state_dict": model.state_dict(), "config": [c.in_dim, c.hidden, c.num_classes, c.kernel],
                             "classes": list(VISEME_CLASSES), "source": source or model.source}, path)


def load_lipreader(path: str | os.PathLike) -> LipReader:
    """Read a lip reader written by :func:`save_lipreader` (e.g. weights trained on a real corpus); frozen, eval mode.

    ``model.source`` tells where the weights came from ("trained-here" for the stand-in of this project).
    """
    from ..official.io import read_checkpoint

    obj = read_checkpoint(path)
    if "state_dict" not in obj:
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


def cli_stage(corpus: Path, preset: str, heldout_fraction: float = 0.25, **overrides) -> LipReaderStage:
    """``sadtalker-lab train lipreader``: the teacher's mouths of a corpus folder's 5-frame windows and their
    viseme labels (the people of ExpNet's held-out split held out: accuracy; ``expnet.expnet_corpus_windows``)."""
    from .expnet import EXPNET_WINDOW, default_morphable_model, expnet_corpus_windows, project_expression

    config = getattr(LipReaderTrainConfig, preset)(**overrides)
    mm = default_morphable_model()
    train, held, _ = expnet_corpus_windows(corpus, EXPNET_WINDOW, heldout_fraction, config.seed)

    def pairs(w):
        with torch.no_grad():
            return mouth_features(project_expression(mm, w.exp_lip, w.id_coeff)), w.viseme

    if train.viseme is None:
        raise ValueError(f"{corpus} has no phoneme timings: the lip reader needs viseme labels")
    return LipReaderStage(*pairs(train), config, heldout=pairs(held) if held is not None else None)
