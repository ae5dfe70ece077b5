"""Training windows as plain tensors: what the ExpNet and PoseVAE stages read.

A corpus (``sadtalker_lib.data``) yields windows one at a time; the loops want them stacked, indexable by a
seeded batch sampler, and (for PoseVAE, whose audio encoder is frozen) with audio embeddings computed once.
:func:`exp_windows_from_dataset` / :func:`pose_windows_from_dataset` collect them from any dataset whose
items are dicts with the corpus keys; :func:`synthetic_exp_windows` / :func:`synthetic_pose_windows` make
tiny learnable stand-ins (no speech synthesis) for unit tests.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from ..coeffs import EXP, EXP_DIM, ID_DIM, POSE, POSE_DIM

__all__ = [
    "ExpWindows",
    "PoseWindows",
    "exp_windows_from_dataset",
    "pose_windows_from_dataset",
    "split_by_clip",
    "corpus_windows",
    "synthetic_exp_windows",
    "synthetic_pose_windows",
    "frame_energy",
]



def _index(obj, idx):
    idx = torch.as_tensor(idx, dtype=torch.long)
    return replace(obj, **{f.name: (None if getattr(obj, f.name) is None else getattr(obj, f.name)[idx])
                           for f in fields(obj)})


def _to(obj, device):
    if all(getattr(obj, f.name) is None or getattr(obj, f.name).device == torch.device(device) for f in fields(obj)):
        return obj
    return replace(obj, **{f.name: (None if getattr(obj, f.name) is None else getattr(obj, f.name).to(device))
                           for f in fields(obj)})


@dataclass
class ExpWindows:
    """ExpNet windows of T frames (T = 5, Sec. 4.1).

    mel [N, T, 1, 80, 16]; exp_lip [N, T, 64] the lip-only target beta^lip (Eq. 3; for the corpus: the
    reference expression plus the viseme teacher's lip motion); ref_exp [N, 64] beta_0, the clip's first-frame
    expression; exp_real [N, T, 64] the full ("real") coefficients, for the Table 3 ablation; id_coeff [N, 80]
    the identity used to project landmarks (zeros when unknown); viseme [N, T] long, audio-derived lip classes
    for L_read (lipreader.VISEME_CLASSES); clip [N] long, the clip each window comes from.
    """

    mel: torch.Tensor
    exp_lip: torch.Tensor
    ref_exp: torch.Tensor
    exp_real: torch.Tensor | None = None
    id_coeff: torch.Tensor | None = None
    viseme: torch.Tensor | None = None
    clip: torch.Tensor | None = None

    def __post_init__(self):
        n, t = self.mel.shape[:2]
        assert self.mel.shape[2:] == (1, 80, 16), f"mel must be [N, T, 1, 80, 16], got {tuple(self.mel.shape)}"
        assert self.exp_lip.shape == (n, t, EXP_DIM), f"exp_lip must be [{n}, {t}, 64], got {tuple(self.exp_lip.shape)}"
        assert self.ref_exp.shape == (n, EXP_DIM), f"ref_exp must be [{n}, 64], got {tuple(self.ref_exp.shape)}"
        if self.exp_real is not None:
            assert self.exp_real.shape == (n, t, EXP_DIM), "exp_real must match exp_lip"
        if self.id_coeff is None:
            self.id_coeff = torch.zeros(n, ID_DIM)
        if self.clip is None:
            self.clip = torch.arange(n)
        if self.viseme is not None:
            assert self.viseme.shape == (n, t), f"viseme must be [{n}, {t}], got {tuple(self.viseme.shape)}"

    def __len__(self) -> int:
        return self.mel.shape[0]

    @property
    def window(self) -> int:
        return self.mel.shape[1]

    def __getitem__(self, idx) -> "ExpWindows":
        return _index(self, idx)

    def to(self, device) -> "ExpWindows":
        """The windows on ``device`` (the same object when they are there already)."""
        return _to(self, device)


@dataclass
class PoseWindows:
    """PoseVAE windows: a reference frame and the T = 32 frames after it (official ``Audio2Pose.forward``).

    pose [N, T+1, 6] (rho = 3 angles + 3 translations; frame 0 is rho_0); style [N] long (pose style ids,
    < PoseVAEConfig.num_classes); mel [N, T+1, 1, 80, 16] (may be dropped once audio_emb is filled);
    audio_emb [N, T, 512] the frozen audio encoder on frames 1..T; energy [N, T+1] per-frame audio energy;
    clip [N] long; start [N] long, the first frame's index in its clip (lets frames shared by overlapping
    windows be encoded once).
    """

    pose: torch.Tensor
    style: torch.Tensor
    mel: torch.Tensor | None = None
    audio_emb: torch.Tensor | None = None
    energy: torch.Tensor | None = None
    clip: torch.Tensor | None = None
    start: torch.Tensor | None = None

    def __post_init__(self):
        n = self.pose.shape[0]
        assert self.pose.ndim == 3 and self.pose.shape[2] == POSE_DIM, \
            f"pose must be [N, T+1, 6], got {tuple(self.pose.shape)}"
        assert self.style.shape == (n,), f"style must be [{n}], got {tuple(self.style.shape)}"
        assert self.mel is not None or self.audio_emb is not None, "give mel windows or audio embeddings"
        if self.clip is None:
            self.clip = torch.arange(n)
        if self.energy is None and self.mel is not None:
            self.energy = frame_energy(self.mel)

    def __len__(self) -> int:
        return self.pose.shape[0]

    @property
    def window(self) -> int:
        return self.pose.shape[1] - 1

    def __getitem__(self, idx) -> "PoseWindows":
        return _index(self, idx)


def frame_energy(mel: torch.Tensor) -> torch.Tensor:
    """Per-frame loudness from mel windows [..., 1, 80, 16]: the mean of the window's middle 4 columns -> [...]."""
    mid = mel.shape[-1] // 2
    return mel[..., mid - 2:mid + 2].mean(dim=(-3, -2, -1))


# ---------------------------------------------------------------------------------------------
# From a corpus dataset
# ---------------------------------------------------------------------------------------------
def _get(item: Mapping, *names, default=None):
    for n in names:
        if n in item and item[n] is not None:
            return item[n]
    return default


def _t(x, dtype=torch.float32):
    return x.to(dtype) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def _items(dataset, indices: Sequence[int] | None):
    idx = range(len(dataset)) if indices is None else indices
    return [dataset[i] for i in idx]


def _clip_visemes(dataset, cache: dict, k: int):
    """Per-frame viseme classes of the k-th clip of a CorpusDataset-like dataset (None without phonemes)."""
    from ..train.lipreader import frame_viseme_labels

    if k not in cache:
        a = dataset.clip_arrays(k)
        names, ms = a.get("phonemes"), a.get("phoneme_ms")
        n = int(a["coeffs"].shape[0])
        cache[k] = None if names is None or len(names) == 0 else torch.from_numpy(
            frame_viseme_labels([(str(p), float(s), float(e)) for p, (s, e) in zip(names, ms)], n))
    return cache[k]


def exp_windows_from_dataset(dataset, indices: Sequence[int] | None = None, window: int = 5) -> ExpWindows:
    """Stack corpus items into :class:`ExpWindows` (each item's first ``window`` frames).

    Item keys (``sadtalker_lib.data.CorpusDataset``): ``mel`` [L, 1, 80, 16], ``coeffs`` [L, 70] (real
    coefficients), ``exp_lip`` [L, 64] (lip-only teacher), ``ref_coeffs`` [70] (the clip's first frame), optional
    ``id_coeff`` [80], ``viseme`` [L], ``clip``, ``start``. When the dataset has ``clip_arrays`` (CorpusDataset)
    the viseme labels come from each clip's phonemes (eSpeak NG timings).
    """
    cols: dict[str, list] = {k: [] for k in ("mel", "exp_lip", "ref_exp", "exp_real", "id_coeff", "viseme", "clip")}
    vis_cache: dict = {}
    for k, item in zip(range(len(dataset)) if indices is None else indices, _items(dataset, indices)):
        mel = _t(item["mel"])[:window]
        if mel.shape[0] < window:
            raise ValueError(f"item {k} has {mel.shape[0]} frames, the window needs {window}")
        coeffs = _t(_get(item, "coeffs", "coeff"))[:window]
        lip = _get(item, "exp_lip", "lip_exp")
        lip = _t(lip)[:window] if lip is not None else coeffs[:, EXP]
        ref = _get(item, "ref_coeffs", "ref_exp")
        cols["mel"].append(mel)
        cols["exp_lip"].append(lip)
        cols["ref_exp"].append(_t(ref).reshape(-1)[:EXP_DIM] if ref is not None else coeffs[0, EXP])
        cols["exp_real"].append(coeffs[:, EXP])
        ident = _get(item, "id_coeff")
        cols["id_coeff"].append(_t(ident).reshape(-1)[:ID_DIM] if ident is not None else torch.zeros(ID_DIM))
        clip = int(_get(item, "clip", default=k))
        vis = _get(item, "viseme")
        if vis is None and hasattr(dataset, "clip_arrays"):
            full = _clip_visemes(dataset, vis_cache, clip)
            start = int(_get(item, "start", default=0))
            vis = None if full is None else full[start:start + window]
        cols["viseme"].append(None if vis is None else _t(vis, torch.long)[:window])
        cols["clip"].append(clip)
    has_vis = all(v is not None for v in cols["viseme"])
    return ExpWindows(
        mel=torch.stack(cols["mel"]), exp_lip=torch.stack(cols["exp_lip"]), ref_exp=torch.stack(cols["ref_exp"]),
        exp_real=torch.stack(cols["exp_real"]), id_coeff=torch.stack(cols["id_coeff"]),
        viseme=torch.stack(cols["viseme"]) if has_vis else None, clip=torch.as_tensor(cols["clip"]),
    )


def pose_windows_from_dataset(dataset, indices: Sequence[int] | None = None, window: int = 32) -> PoseWindows:
    """Stack corpus items into :class:`PoseWindows` (each item's first ``window + 1`` frames: rho_0 and 32 more).

    Item keys: ``mel`` [L, 1, 80, 16], ``coeffs`` [L, 70] (pose = columns 64:70), ``style_id``, ``clip``,
    ``start``. Build the dataset with ``window=33``.
    """
    pose, mel, style, clip, start = [], [], [], [], []
    for k, item in zip(range(len(dataset)) if indices is None else indices, _items(dataset, indices)):
        c = _t(_get(item, "coeffs", "coeff"))
        if c.shape[0] < window + 1:
            raise ValueError(f"item {k} has {c.shape[0]} frames, PoseVAE needs {window + 1} (reference + {window})")
        pose.append(c[:window + 1, POSE])
        mel.append(_t(item["mel"])[:window + 1])
        style.append(int(_get(item, "style_id", "style", default=0)))
        clip.append(int(_get(item, "clip", default=k)))
        start.append(int(_get(item, "start", default=0)))
    return PoseWindows(pose=torch.stack(pose), style=torch.as_tensor(style), mel=torch.stack(mel),
                       clip=torch.as_tensor(clip), start=torch.as_tensor(start))


def split_by_clip(windows, heldout_fraction: float = 0.2, seed: int = 0):
    """(train, held-out) with whole clips held out (no window of a held-out clip is trained on)."""
    clips = torch.unique(windows.clip).tolist()
    rng = np.random.default_rng(seed)
    rng.shuffle(clips)
    n_held = max(1, int(round(heldout_fraction * len(clips)))) if len(clips) > 1 else 0
    held = set(clips[:n_held])
    mask = torch.tensor([int(c) in held for c in windows.clip])
    return windows[torch.nonzero(~mask).flatten()], windows[torch.nonzero(mask).flatten()]


def corpus_windows(corpus, builder, window: int, heldout_clips: int = 1, strides: tuple[int, int] = (2, 3)):
    """(train, held-out or None) windows of a corpus folder: ``builder`` (e.g. :func:`exp_windows_from_dataset`)
    over ``CorpusDataset`` windows of ``window`` frames; the last ``heldout_clips`` clips held out (at least one
    clip kept for training); ``strides``: frames between windows in training / held-out clips."""
    from .corpus import CorpusDataset, load_index

    n = len(load_index(corpus)["clips"])
    held = max(0, min(heldout_clips, n - 1))
    ids = list(range(n))
    train = builder(CorpusDataset(corpus, window=window, stride=strides[0], clips=ids[:n - held]))
    heldout = builder(CorpusDataset(corpus, window=window, stride=strides[1], clips=ids[n - held:])) if held else None
    return train, heldout


# ---------------------------------------------------------------------------------------------
# Synthetic stand-ins (unit tests; no speech synthesis)
# ---------------------------------------------------------------------------------------------
def synthetic_exp_windows(n: int = 64, window: int = 5, num_classes: int = 8, seed: int = 0,
                          mouth_dims: Sequence[int] = (0, 4, 7)) -> ExpWindows:
    """Learnable toy windows: each frame shows one of ``num_classes`` "sounds" (a fixed mel pattern + noise);
    the lip-only target is the clip's beta_0 plus a class-specific mouth offset on ``mouth_dims``; the real
    coefficients add random audio-independent motion (brows, blinks) on other dimensions."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 1, 80, 16, generator=g)
    mouth = torch.randn(num_classes, len(mouth_dims), generator=g) * 0.6
    labels = torch.randint(0, num_classes, (n, window), generator=g)
    mel = patterns[labels] + 0.3 * torch.randn(n, window, 1, 80, 16, generator=g)
    clip = torch.arange(n) // 4
    ref_clip = 0.3 * torch.randn(int(clip.max()) + 1, EXP_DIM, generator=g)
    ref = ref_clip[clip]
    lip = ref[:, None].repeat(1, window, 1)
    lip[..., list(mouth_dims)] += mouth[labels]
    real = lip.clone()
    other = [d for d in range(16) if d not in mouth_dims][:4]
    real[..., other] += 0.5 * torch.randn(n, window, len(other), generator=g)
    return ExpWindows(mel=mel, exp_lip=lip, ref_exp=ref, exp_real=real, viseme=labels, clip=clip)


def synthetic_pose_windows(n: int = 32, window: int = 32, num_styles: int = 3, seed: int = 0,
                           with_mel: bool = True) -> PoseWindows:
    """Toy head motion: per style a different amplitude / frequency of sinusoidal sway around a random rho_0,
    nods on loud frames. With ``with_mel`` the windows carry mel windows, else random audio embeddings."""
    g = torch.Generator().manual_seed(seed)
    style = torch.arange(n) % num_styles
    t = torch.arange(window + 1, dtype=torch.float32)
    amp = (0.05 + 0.05 * style.float())[:, None]
    freq = (0.1 + 0.05 * style.float())[:, None]
    phase = 6.28 * torch.rand(n, 1, generator=g)
    loud = (torch.rand(n, window + 1, generator=g) > 0.7).float()
    ref = 0.2 * torch.randn(n, POSE_DIM, generator=g)
    sway = amp * torch.sin(freq * t + phase)  # [N, T+1]
    pose = ref[:, None].repeat(1, window + 1, 1)
    pose[..., 0] += sway + 0.03 * loud
    pose[..., 1] += 0.5 * sway.roll(3, dims=1)
    pose[..., 3:] += 0.2 * sway[..., None]
    pose = pose - pose[:, :1] + ref[:, None]  # frame 0 is rho_0 exactly
    if with_mel:
        mel = torch.randn(n, window + 1, 1, 80, 16, generator=g) * 0.5 + 2.0 * loud[..., None, None, None]
        return PoseWindows(pose=pose, style=style, mel=mel, clip=torch.arange(n))
    emb = torch.randn(n, window, 512, generator=g) + loud[:, 1:, None]
    return PoseWindows(pose=pose, style=style, audio_emb=emb, energy=loud, clip=torch.arange(n))
