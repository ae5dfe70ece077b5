"""The SyncNet training stage: the offline stand-in for ``syncnet_v2.model`` (labelled "trained-here").

The official weights cannot be downloaded in this project, so LSE-C / LSE-D default to a SyncNet with the
same architecture (``metrics.syncnet``) trained on the project's own corpus of face-crop / audio pairs. The
objective is the contrastive loss of the SyncNet paper (Chung & Zisserman 2016, Eq. 1-2):

    E = 1/(2N) sum_n  y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2,   d_n = || v_n - a_n ||_2

with positives (``y = 1``) = the audio window aligned with the 5 frames, negatives = an audio window of
the same clip shifted by at least ``min_negative_shift`` frames. The margin (20) is this project's choice;
the scale of the resulting distances is therefore not the official one, which is why the table labels the
columns ``LSE-C [trained-here]`` / ``LSE-D [trained-here]``.

Four additions make a SyncNet learn on a CPU in minutes rather than GPU-days (all project choices, off in
the plain ``SyncTrainConfig()`` and on in ``CORPUS_TRAIN_DEFAULTS``, which ``train_syncnet_on_corpus`` uses):

* **several audio windows per lip window** (``audio_negatives``): the lip tower costs ~7x the audio tower per
  window, so every lip window is compared with its aligned audio and K shifted audio windows of the same clip,
  scored with the contrastive loss (positive and mean negative term weighted equally) or the multi-way
  matching loss (``loss="multiway"``: softmax cross-entropy over ``-d`` with the aligned window as the
  target; Chung, Chung & Zisserman 2019, "Perfect match", Sec. 3);
* **a mouth-state term** (``mouth_weight``): the corpus knows what the mouth does (``exp_lip``, the lip
  coefficients that drove the rendering, or those fitted to a video). The first ``5 k`` embedding dimensions of
  both towers regress the ``k`` mouth coefficients (scaled to unit std) of the window's 5 frames (mean squared
  error). Both towers are pushed to the same mouth code, so in-sync embeddings are close from the start;
* **small initial embeddings** (``embedding_init_scale``): the last layer of both towers starts near zero, so
  distances are made of what training puts there (the mouth code first) rather than random directions;
* **BatchNorm recalibration** (``bn_recalibration_batches``): after a short run the running statistics lag
  the weights; they are re-estimated (cumulative average) over a few training batches before eval mode.

The pairs (aligned crops + MFCC) come from ``data/sync_pairs.py``; the loop is ``train/loop.py`` (the batch of step
k is drawn with ``step_rng(seed, k)``); ``sadtalker-lab train syncnet --corpus DIR`` runs it from the command line.
The LSE metric itself stays in ``metrics/lse.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.sync_pairs import WINDOW, MouthTargets, SyncPair, corpus_sync_pairs, make_pairs, multi_batch, plain_batch
from ..metrics.lse import TRAINED_HERE_FORMAT, TRAINED_HERE_LABEL
from ..metrics.syncnet import SyncNet
from .loop import RunContext, Stage, StepContext, TrainConfig, precise_batchnorm, run, step_rng

__all__ = ["SyncTrainConfig", "SyncTrainResult", "SyncPair", "make_pairs", "contrastive_loss", "multi_negative_loss",
           "multiway_loss", "recalibrate_batchnorm", "SyncNetStage", "train_syncnet", "save_trained_syncnet",
           "CORPUS_TRAIN_DEFAULTS", "corpus_sync_pairs", "sync_report", "train_syncnet_on_corpus", "cli_stage",
           "WINDOW"]
TRAINED_HERE_FILE = "syncnet_trained_here.pt"  # the name metrics.lse.load_syncnet looks for


@dataclass
class SyncTrainConfig(TrainConfig):
    """SyncNet training; the plain defaults are the SyncNet paper's sampling (one pair per lip window, contrastive
    loss); ``CORPUS_TRAIN_DEFAULTS`` switches on the project's additions (module docstring). Presets: ``tiny``,
    ``cpu`` (= the corpus defaults), ``paper`` (= the plain defaults)."""

    steps: int = 2000
    batch_size: int = 16  # lip windows per step
    lr: float = 1e-4
    margin: float = 20.0  # contrastive margin (project choice, see module docstring)
    min_negative_shift: int = 5  # frames; negatives are at least this far from the aligned window
    positive_fraction: float = 0.5  # plain sampling (audio_negatives == 0) only
    seed: int = 0
    device: str | None = "cpu"
    checkpoint_every: int = 0
    # > 0: each lip window is paired with its aligned audio window and this many shifted audio windows of the
    # same clip; 0: one pair per lip window, positive with probability ``positive_fraction`` (plain SyncNet).
    audio_negatives: int = 0
    max_negative_shift: int | None = None  # frames; negatives at most this far (None: anywhere in the clip)
    loss: str = "contrastive"  # with audio_negatives > 0: "contrastive" or "multiway" (module docstring)
    mouth_weight: float = 0.0  # weight of the mouth-state term (needs audio_negatives > 0 and SyncPair.mouth)
    sync_weight: float = 1.0  # weight of the sync term (contrastive / multiway)
    # with the mouth term: compute the sync term on the mouth-code dimensions only (the rest of the embedding
    # then stays as initialised, near zero with a small embedding_init_scale)
    sync_on_mouth_code: bool = False
    # with the mouth term: one more embedding dimension of both towers regresses this constant, so that every
    # real window embeds at least this far from the zero vectors the protocol pads the audio with beyond the
    # clip's ends (calc_pdist): padding then reads as a mismatch, as for the official model (0: no anchor)
    mouth_anchor: float = 0.0
    bn_recalibration_batches: int = 4  # 0: keep the running statistics of training
    # a fresh model's last embedding layers (both towers) start with weights and bias times this: near-zero
    # embeddings, so that distances grow only in the dimensions training uses (project choice; 1: PyTorch init)
    embedding_init_scale: float = 1.0

    @classmethod
    def cpu(cls, **changes) -> "SyncTrainConfig":
        """The corpus defaults (``CORPUS_TRAIN_DEFAULTS``), 300 steps, checkpoints every 100."""
        return cls(**{**CORPUS_TRAIN_DEFAULTS, **dict(steps=300, checkpoint_every=100, eval_every=100), **changes})

    @classmethod
    def tiny(cls, **changes) -> "SyncTrainConfig":
        """Smoke preset: 4 steps of 4 lip windows x (1 + 3) audio windows."""
        base = dict(CORPUS_TRAIN_DEFAULTS, batch_size=4, audio_negatives=3, bn_recalibration_batches=2, steps=4,
                    checkpoint_every=2, eval_every=2, progress=False)
        return cls(**{**base, **changes})


@dataclass
class SyncTrainResult:
    model: SyncNet
    losses: list[float] = field(default_factory=list)
    config: SyncTrainConfig | None = None
    label: str = TRAINED_HERE_LABEL
    sync_losses: list[float] = field(default_factory=list)  # the sync term alone (= losses without mouth term)


# --- losses -----------------------------------------------------------------------------------------------------------
def contrastive_loss(lip: torch.Tensor, aud: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """SyncNet's contrastive loss; ``label`` 1 for in-sync pairs, 0 for off-sync."""
    d = F.pairwise_distance(lip, aud)
    return 0.5 * (label * d.square() + (1 - label) * torch.clamp(margin - d, min=0).square()).mean()


def _distances(lip: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` lip and ``[B, 1 + K, D]`` audio embeddings -> ``[B, 1 + K]`` distances (pairwise_distance)."""
    dim = aud.shape[-1]
    return F.pairwise_distance(lip[:, None].expand_as(aud).reshape(-1, dim), aud.reshape(-1, dim)).view(aud.shape[:2])


def multi_negative_loss(lip: torch.Tensor, aud: torch.Tensor, mask: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive loss of one lip embedding ``[B, D]`` against its aligned (``aud[:, 0]``) and shifted
    (``aud[:, 1:]``, valid where ``mask[:, 1:]``) audio embeddings ``[B, 1 + K, D]``:
    ``0.5 (d_pos^2 + mean_k max(margin - d_k, 0)^2)``."""
    d = _distances(lip, aud)
    neg_mask = mask[:, 1:]
    neg = (torch.clamp(margin - d[:, 1:], min=0).square() * neg_mask).sum(1) / neg_mask.sum(1).clamp(min=1)
    return 0.5 * (d[:, 0].square() + neg).mean()


def multiway_loss(lip: torch.Tensor, aud: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of picking the aligned audio (``aud[:, 0]``) among ``[B, 1 + K, D]`` with logits ``-d``."""
    logits = (-_distances(lip, aud)).masked_fill(mask == 0, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


# --- the stage --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def recalibrate_batchnorm(model: SyncNet, batches) -> SyncNet:
    """``loop.precise_batchnorm`` over ``batches`` of ``(lips [B, 3, 5, H, W], audio [B', 1, 13, 20])``: every
    BatchNorm's running mean / variance becomes the plain average over the batches; returns the model in eval mode."""
    device = next(model.parameters()).device

    def feed():
        for lips, auds in batches:
            model.forward_lips(lips.to(device))
            model.forward_audio(auds.to(device))

    precise_batchnorm(model, feed)
    return model.eval()


class SyncNetStage(Stage):
    """SyncNet on :class:`SyncPair` clips as a :class:`~sadtalker_lib.train.loop.Stage` (held-out pairs optional:
    ``sync_report`` numbers). The global batch of step k is ``multi_batch`` / ``plain_batch`` with ``step_rng``."""

    name, stem = "SyncNet", "syncnet"

    def __init__(self, pairs: list[SyncPair], config: SyncTrainConfig | None = None, *, model: SyncNet | None = None,
                 heldout: list[SyncPair] | None = None, callback: Callable[[int, SyncNet, float], None] | None = None):
        cfg = self.config = config or SyncTrainConfig()
        if cfg.loss not in ("contrastive", "multiway"):
            raise ValueError(f"loss must be 'contrastive' or 'multiway', got {cfg.loss!r}")
        if cfg.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (BatchNorm)")
        if cfg.mouth_weight > 0 and cfg.audio_negatives <= 0:
            raise ValueError("mouth_weight > 0 needs audio_negatives > 0")
        self.pairs, self.heldout, self.model, self.callback = pairs, heldout, model, callback
        self._cached: tuple[int, tuple] | None = None

    def build(self, ctx: RunContext) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if self.model is None:
            self.model = SyncNet()
            if cfg.embedding_init_scale != 1.0:
                with torch.no_grad():
                    for head in (self.model.lip_head, self.model.audio_head):
                        head[-1].weight.mul_(cfg.embedding_init_scale)
                        head[-1].bias.mul_(cfg.embedding_init_scale)
        self.model.train()
        self.mouth = (MouthTargets(self.pairs, self.model.config.embedding_dim, cfg.mouth_anchor)
                      if cfg.mouth_weight > 0 else None)
        self.modules = {"syncnet": self.model}
        self.train_modules = {"syncnet": self.model}
        self.optimizers = {"main": torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))}

    def batch_indices(self, step: int) -> np.ndarray:
        return np.arange(self.config.batch_size)  # positions in the step's sampled batch

    def _batch(self, step: int) -> tuple:
        """The global batch of ``step`` (built once per step, sliced per process / micro-batch)."""
        if self._cached is None or self._cached[0] != step:
            rng = step_rng(self.config.seed, step)
            if self.config.audio_negatives > 0:
                self._cached = (step, multi_batch(self.pairs, rng, self.config, self.mouth))
            else:
                self._cached = (step, plain_batch(self.pairs, rng, self.config))
        return self._cached[1]

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        cfg, net, dev, sel = self.config, ctx.module("syncnet"), ctx.device, ctx.indices
        if cfg.audio_negatives > 0:
            lips, auds, mask, targets = self._batch(ctx.step)
            lips, auds, mask = lips[sel].to(dev), auds[sel].to(dev), mask[sel].to(dev)
            b, n = auds.shape[:2]
            aud_emb, lip_emb = net(auds.flatten(0, 1), lips)  # forward(): both towers through DDP
            aud_emb = aud_emb.view(b, n, -1)
            dims = self.mouth.dim if self.mouth is not None and cfg.sync_on_mouth_code else lip_emb.shape[-1]
            if cfg.loss == "multiway":
                sync = multiway_loss(lip_emb[:, :dims], aud_emb[..., :dims], mask)
            else:
                sync = multi_negative_loss(lip_emb[:, :dims], aud_emb[..., :dims], mask, cfg.margin)
            loss = cfg.sync_weight * sync
            if self.mouth is not None:
                y_lip, y_aud = (t[sel].to(dev) for t in targets)
                k = self.mouth.dim
                aud_err = (aud_emb[..., :k] - y_aud).square().mean(-1)
                loss = loss + cfg.mouth_weight * (
                    F.mse_loss(lip_emb[:, :k], y_lip) + (aud_err * mask).sum() / mask.sum())
        else:
            lips, auds, labels = self._batch(ctx.step)
            aud_emb, lip_emb = net(auds[sel].to(dev), lips[sel].to(dev))
            sync = loss = contrastive_loss(lip_emb, aud_emb, labels[sel].to(dev), cfg.margin)
        ctx.update("main", loss)
        return {"loss": float(loss.detach()), "sync": float(sync.detach())}

    def after_step(self, ctx: RunContext, step: int, terms: dict[str, float]) -> None:
        if self.callback is not None:
            self.callback(step, self.model, terms["loss"])

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if not self.heldout:
            return None
        was = self.model.training
        report = sync_report(self.model, self.heldout)
        self.model.train(was)
        return {k: v for k, v in report.items() if isinstance(v, float)}

    def finalize(self, ctx: RunContext) -> None:
        cfg = self.config
        if cfg.bn_recalibration_batches > 0:  # a fixed seeded set of training batches (steps after the last)
            cal = []
            for i in range(cfg.bn_recalibration_batches):
                rng = step_rng(cfg.seed, cfg.steps + i)
                batch = multi_batch(self.pairs, rng, cfg) if cfg.audio_negatives > 0 else plain_batch(self.pairs, rng,
                                                                                                       cfg)
                lips, auds = batch[:2]
                cal.append((lips, auds.flatten(0, 1) if auds.ndim == 5 else auds))
            recalibrate_batchnorm(self.model, cal)

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_trained_syncnet(self.model, out_dir / TRAINED_HERE_FILE, notes=f"{self.config.steps} steps")


def train_syncnet(items, config: SyncTrainConfig | None = None, *, model: SyncNet | None = None,
                  progress: bool | None = None, callback: Callable[[int, SyncNet, float], None] | None = None,
                  out_dir=None, resume: bool = True, stop_after: int | None = None) -> SyncTrainResult:
    """Train a SyncNet on aligned (crops, audio) pairs or Clips; returns the model (eval mode) and losses.

    ``callback(step, model, loss)`` is called after every step (the model is in train mode; leave it so).
    ``out_dir``: keep the log, resumable checkpoints and the exported file there (default: nothing written).
    """
    cfg = config or SyncTrainConfig()
    if progress is not None:
        cfg = cfg.replace(progress=progress)
    pairs = items if items and isinstance(items[0], SyncPair) else make_pairs(items)
    stage = SyncNetStage(pairs, cfg, model=model, callback=callback)
    res = run(stage, out_dir, resume=resume, stop_after=stop_after)
    losses = [float(v) for v in res.history.series("loss")[1]]
    sync = [float(v) for v in res.history.series("sync")[1]]
    return SyncTrainResult(model=stage.model.eval(), losses=losses, config=cfg, sync_losses=sync)


def save_trained_syncnet(result: SyncTrainResult | SyncNet, path: str | Path, *, notes: str = "") -> Path:
    """Write a trained-here SyncNet that ``metrics.lse.load_syncnet`` reads (label "trained-here")."""
    model = result.model if isinstance(result, SyncTrainResult) else result
    from ..official.io import write_checkpoint

    blob = {
        "format": TRAINED_HERE_FORMAT,
        "label": TRAINED_HERE_LABEL,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "notes": notes,
    }
    return write_checkpoint(blob, path)


# --- the default corpus -----------------------------------------------------------------------------------------------
#: ``train_syncnet_on_corpus`` defaults (see the module docstring): 8 lip windows per step, each against its
#: aligned and 6 shifted audio windows (4..15 frames away, the range LSE searches), multi-way loss, the
#: mouth-state term, a larger learning rate than the SyncNet paper's.
CORPUS_TRAIN_DEFAULTS = dict(batch_size=8, lr=1e-3, min_negative_shift=4, max_negative_shift=15, audio_negatives=6,
                             loss="multiway", sync_weight=0.5, sync_on_mouth_code=True, mouth_weight=1.0,
                             mouth_anchor=5.0, embedding_init_scale=0.01, bn_recalibration_batches=6)


@torch.no_grad()
def sync_report(model: SyncNet, pairs: list[SyncPair], *, shift: int = 8, min_negative_shift: int = 4) -> dict:
    """How well ``model`` tells in-sync from off-sync audio on ``pairs`` (e.g. held-out clips).

    Per clip, LSE-D / LSE-C / offset (the ``metrics.lse`` protocol, +-15 frames) of the aligned clip and of an
    off-sync copy whose audio lags the video by ``shift`` frames (lip window ``i + shift`` with audio window
    ``i``; the protocol's offset for it is ``-shift``), and ``pair_accuracy``: over every lip window and every audio
    window ``min_negative_shift`` .. 15 frames away, the fraction where the aligned audio is the closer one
    (chance 0.5).
    Returns means over clips plus ``per_clip`` lists.
    """
    from ..metrics.lse import VSHIFT, lse_from_embeddings, offset_distances, sync_embeddings

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
    * ``out_path``: where to save (default ``metrics.weights.default_weight_path("syncnet_trained_here")``, where
      ``metrics.lse.load_syncnet`` / ``metrics.evaluate`` look for it).
    * ``steps`` / ``seed`` / ``config``: training length, seed, and any other ``SyncTrainConfig`` (default
      ``CORPUS_TRAIN_DEFAULTS``: 8 lip windows x (1 aligned + 8 shifted audio windows) per step).
    * ``shift``: frames by which the held-out off-sync copies are shifted.

    ``history``: ``loss`` (per step), ``before`` / ``after`` (``sync_report`` on the held-out clips; None
    without held-out clips), ``train_clips``, ``heldout_clips``, ``seconds``, ``config``, ``path``.
    """
    import json
    import time

    from ..data.corpus import load_index
    from ..metrics.weights import default_weight_path

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
    result = train_syncnet(train_pairs, cfg.replace(progress=progress), model=model)
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


def cli_stage(corpus: Path, preset: str, heldout_clips: int = 1, boxes: str = "dlib", **overrides) -> SyncNetStage:
    """``sadtalker-lab train syncnet``: crops of a corpus folder (the last ``heldout_clips`` clips held out)."""
    config = getattr(SyncTrainConfig, preset)(**{"device": None, **overrides})
    pairs, _ = corpus_sync_pairs(corpus, boxes=boxes)
    held = max(0, min(heldout_clips, len(pairs) - 1))
    return SyncNetStage(pairs[:len(pairs) - held], config, heldout=pairs[len(pairs) - held:] or None)
