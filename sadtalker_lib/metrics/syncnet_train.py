"""Training a SyncNet here, the offline stand-in for ``syncnet_v2.model`` (labelled "trained-here").

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

Inputs are (crops, audio) pairs: ``crops`` uint8 ``[T, 224, 224, 3]`` RGB as made by
``metrics.lse.face_crops`` and ``audio`` float ``[N]`` 16 kHz mono, aligned, 25 fps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .lse import (MFCC_PER_FRAME, SAMPLES_PER_FRAME, TRAINED_HERE_FORMAT, TRAINED_HERE_LABEL, face_crops,
                  syncnet_mfcc)
from .syncnet import SyncNet

__all__ = ["SyncTrainConfig", "SyncTrainResult", "SyncPair", "make_pairs", "contrastive_loss", "multi_negative_loss",
           "multiway_loss", "recalibrate_batchnorm", "train_syncnet", "save_trained_syncnet",
           "CORPUS_TRAIN_DEFAULTS", "corpus_sync_pairs", "sync_report", "train_syncnet_on_corpus"]

WINDOW = 5  # video frames per SyncNet window


@dataclass
class SyncTrainConfig:
    steps: int = 2000
    batch_size: int = 16  # lip windows per step
    lr: float = 1e-4
    margin: float = 20.0  # contrastive margin (project choice, see module docstring)
    min_negative_shift: int = 5  # frames; negatives are at least this far from the aligned window
    positive_fraction: float = 0.5  # plain sampling (audio_negatives == 0) only
    seed: int = 0
    device: str = "cpu"
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


@dataclass
class SyncPair:
    """One aligned clip: ``crops`` uint8 ``[T, H, W, 3]`` RGB, ``mfcc`` ``[13, M]`` (4 columns per frame),
    ``mouth`` optional ``[T, k]`` per-frame mouth coefficients (the mouth-state term's targets)."""

    crops: np.ndarray
    mfcc: np.ndarray
    num_windows: int
    mouth: np.ndarray | None = None
    name: str = ""


@dataclass
class SyncTrainResult:
    model: SyncNet
    losses: list[float] = field(default_factory=list)
    config: SyncTrainConfig | None = None
    label: str = TRAINED_HERE_LABEL
    sync_losses: list[float] = field(default_factory=list)  # the sync term alone (= losses without mouth term)


def _corpus_mouth(item: dict) -> np.ndarray | None:
    if "exp_lip" not in item:
        return None
    from sadtalker_lib.data.corpus import MOUTH_DIMS

    return np.asarray(item["exp_lip"], np.float32)[:, list(MOUTH_DIMS)]


def make_pairs(items) -> list[SyncPair]:
    """Training pairs from ``(crops, audio)`` / ``(crops, audio, mouth)`` tuples, ``metrics.Clip`` objects, or dicts
    with ``frames`` and ``audio`` (e.g. ``sadtalker_lib.data.corpus.load_clip(root, i)``, whose ``exp_lip``
    mouth directions become ``mouth``). Clips and dicts are cut into SyncNet crops exactly as the evaluation
    does (dlib face track + ``face_crops``), so training and scoring see the same crops."""
    from .faces import track_faces
    from .video_io import Clip

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


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------
def _lip_window(pair: SyncPair, v: int) -> torch.Tensor:
    """``[3, 5, H, W]`` float 0..255, BGR as the evaluation feeds it."""
    win = pair.crops[v: v + WINDOW, ..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(win)).float().permute(3, 0, 1, 2)


def _audio_window(pair: SyncPair, a: int) -> torch.Tensor:
    """``[1, 13, 20]`` MFCC window of video frame ``a`` (``SyncNetInstance``: columns ``4a .. 4a + 19``)."""
    return torch.from_numpy(pair.mfcc[:, a * MFCC_PER_FRAME: a * MFCC_PER_FRAME + 20]).float()[None]


class _MouthTargets:
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


def _negative_windows(pair: SyncPair, v: int, cfg: SyncTrainConfig) -> list[int]:
    hi = cfg.max_negative_shift
    return [u for u in range(pair.num_windows)
            if abs(u - v) >= cfg.min_negative_shift and (hi is None or abs(u - v) <= hi)]


def _multi_batch(pairs: list[SyncPair], rng: np.random.Generator, cfg: SyncTrainConfig,
                 mouth: _MouthTargets | None = None):
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


def _batch(pairs: list[SyncPair], rng: np.random.Generator, cfg: SyncTrainConfig):
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


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def recalibrate_batchnorm(model: SyncNet, batches) -> SyncNet:
    """Re-estimate every BatchNorm's running mean / variance as the plain average over ``batches`` of
    ``(lips [B, 3, 5, H, W], audio [B', 1, 13, 20])`` in train mode (weights untouched); returns the model in
    eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    device = next(model.parameters()).device
    for lips, auds in batches:
        model.forward_lips(lips.to(device))
        model.forward_audio(auds.to(device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def train_syncnet(items, config: SyncTrainConfig | None = None, *, model: SyncNet | None = None,
                  progress: bool = True,
                  callback: Callable[[int, SyncNet, float], None] | None = None) -> SyncTrainResult:
    """Train a SyncNet on aligned (crops, audio) pairs or Clips; returns the model (eval mode) and losses.

    ``callback(step, model, loss)`` is called after every step (the model is in train mode; leave it so).
    """
    cfg = config or SyncTrainConfig()
    if cfg.loss not in ("contrastive", "multiway"):
        raise ValueError(f"loss must be 'contrastive' or 'multiway', got {cfg.loss!r}")
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be at least 2 (BatchNorm)")
    if cfg.mouth_weight > 0 and cfg.audio_negatives <= 0:
        raise ValueError("mouth_weight > 0 needs audio_negatives > 0")
    pairs = items if items and isinstance(items[0], SyncPair) else make_pairs(items)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if model is None:
        model = SyncNet()
        if cfg.embedding_init_scale != 1.0:
            with torch.no_grad():
                for head in (model.lip_head, model.audio_head):
                    head[-1].weight.mul_(cfg.embedding_init_scale)
                    head[-1].bias.mul_(cfg.embedding_init_scale)
    model = model.to(cfg.device).train()
    mouth = _MouthTargets(pairs, model.config.embedding_dim, cfg.mouth_anchor) if cfg.mouth_weight > 0 else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses, sync_losses = [], []
    for step in tqdm(range(cfg.steps), desc="SyncNet", disable=not progress):
        if cfg.audio_negatives > 0:
            lips, auds, mask, targets = _multi_batch(pairs, rng, cfg, mouth)
            b, n = auds.shape[:2]
            mask = mask.to(cfg.device)
            aud_emb = model.forward_audio(auds.flatten(0, 1).to(cfg.device)).view(b, n, -1)
            lip_emb = model.forward_lips(lips.to(cfg.device))
            dims = mouth.dim if mouth is not None and cfg.sync_on_mouth_code else lip_emb.shape[-1]
            if cfg.loss == "multiway":
                sync = multiway_loss(lip_emb[:, :dims], aud_emb[..., :dims], mask)
            else:
                sync = multi_negative_loss(lip_emb[:, :dims], aud_emb[..., :dims], mask, cfg.margin)
            loss = cfg.sync_weight * sync
            if mouth is not None:
                y_lip, y_aud = (t.to(cfg.device) for t in targets)
                k = mouth.dim
                aud_err = (aud_emb[..., :k] - y_aud).square().mean(-1)
                loss = loss + cfg.mouth_weight * (
                    F.mse_loss(lip_emb[:, :k], y_lip) + (aud_err * mask).sum() / mask.sum())
        else:
            lips, auds, labels = _batch(pairs, rng, cfg)
            sync = loss = contrastive_loss(model.forward_lips(lips.to(cfg.device)),
                                           model.forward_audio(auds.to(cfg.device)), labels.to(cfg.device),
                                           cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        sync_losses.append(float(sync.detach()))
        if callback is not None:
            callback(step + 1, model, losses[-1])
    if cfg.bn_recalibration_batches > 0:
        cal = [_multi_batch(pairs, rng, cfg)[:2] if cfg.audio_negatives > 0 else _batch(pairs, rng, cfg)[:2]
               for _ in range(cfg.bn_recalibration_batches)]
        recalibrate_batchnorm(model, [(lips, auds.flatten(0, 1) if auds.ndim == 5 else auds) for lips, auds in cal])
    return SyncTrainResult(model=model.eval(), losses=losses, config=cfg, sync_losses=sync_losses)


def save_trained_syncnet(result: SyncTrainResult | SyncNet, path: str | Path, *, notes: str = "") -> Path:
    """Write a trained-here SyncNet that ``metrics.lse.load_syncnet`` reads (label "trained-here")."""
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
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# Training on the project's default corpus (sadtalker_lib.data.corpus)
# ---------------------------------------------------------------------------------------------
#: ``train_syncnet_on_corpus`` defaults (see the module docstring): 8 lip windows per step, each against its
#: aligned and 6 shifted audio windows (4..15 frames away, the range LSE searches), multi-way loss, the
#: mouth-state term, a larger learning rate than the SyncNet paper's.
CORPUS_TRAIN_DEFAULTS = dict(batch_size=8, lr=1e-3, min_negative_shift=4, max_negative_shift=15, audio_negatives=6,
                             loss="multiway", sync_weight=0.5, sync_on_mouth_code=True, mouth_weight=1.0,
                             mouth_anchor=5.0, embedding_init_scale=0.01, bn_recalibration_batches=6)


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
        (pair,) = make_pairs([(face_crops(frames, track), arrays["audio"], _corpus_mouth(arrays))])
        pair.name = entry["id"]
        pairs.append(pair)
        ids.append(entry["id"])
    return pairs, ids


@torch.no_grad()
def sync_report(model: SyncNet, pairs: list[SyncPair], *, shift: int = 8, min_negative_shift: int = 4) -> dict:
    """How well ``model`` tells in-sync from off-sync audio on ``pairs`` (e.g. held-out clips).

    Per clip, LSE-D / LSE-C / offset (the ``metrics.lse`` protocol, +-15 frames) of the aligned clip and of an
    off-sync copy whose audio lags the video by ``shift`` frames (lip window ``i + shift`` with audio window
    ``i``; the protocol's offset for it is ``-shift``), and ``pair_accuracy``: over every lip window and every audio window
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
