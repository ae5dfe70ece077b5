"""PoseVAE on held-out data beside its trivial baselines, and its whole-clip metrics (Table 4).

Held-out pose MSE (this project's definition; the paper reports none): the setup of Sec. 3.2 / official
``Audio2Pose``: given the first frame's pose rho_0, the audio of frames 1..32 and the style, predict the residual
motion Delta rho_{1..32} = rho_{1..32} - rho_0 of a held-out window; the error is

    pose_mse = mean over windows, 32 frames and the 6 pose values of (Delta rho'_t - Delta rho_t)^2

in raw units (angles in radians, translations in the morphable model's units). The trained model predicts with
the decoder alone (the inference path) at z = 0, the prior's mean (``pose_mse``), and with one draw
z ~ N(0, I) per window (``pose_mse_sampled``). Baselines, each the same error of something trivial:

* ``still_head``: Delta rho' = 0 (rho_t = rho_0: no head motion);
* ``random_training_sequence``: the real residual motion of a window of another (training) clip, aligned to the
  held-out window's first frame (rho_0 + its Delta rho);
* ``linear_in_rho0``: a least-squares fit on the training windows of the 32 x 6 residuals as an affine function
  of the 6 values of rho_0 (no audio, no style, no z): the return towards a rest pose that rho_0 alone predicts.
  Not in the paper, and not a "trivial" motion like the two above: a floor for what the decoder at z = 0
  should reach from the same rho_0 (:func:`linear_ref_pose_motion`).

A sample and the random training sequence are both "a plausible motion, not this one": their errors compare
like with like; the z = 0 prediction compares with the still head. Use of z: the held-out KL (nats per latent
dimension; ~0 = the posterior collapsed, the decoder ignores z) and ``z_spread``, the RMS difference of two
samples with different z over the RMS of the real residuals. Diversity (``metrics.diversity``: mean over the
three angles of the std over time) of sampled windows over that of the real held-out windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ..coeffs import ANGLE, ANGLE_DIM
from ..data.corpus.format import FPS, SAMPLE_RATE
from ..data.windows import PoseWindows
from ..models.posevae import PoseVAE
from .heldout import HeldoutMetric, HeldoutReport
from .losses import kl_loss
from .posevae import PoseVAETrainConfig, _conditions
from .posevae_audio import with_embeddings as _with_embeddings

__all__ = ["PoseHeldoutMetrics", "random_training_motion", "linear_ref_pose_motion", "decode_windows",
           "evaluate_pose_heldout", "pose_heldout_report", "PoseClipMetrics", "evaluate_posevae_clips"]

POSE_MSE_LABEL = ("MSE of the residual Delta rho = rho_t - rho_0 over 32 frames x 6 values (rad; model units) given "
                  "rho_0, audio, style; decoder at z = 0")


@dataclass
class PoseHeldoutMetrics:
    """Held-out windows: the trained model and its baselines (module docstring). MSEs in raw units."""

    pose_mse: float
    pose_mse_sampled: float
    still_head: float
    random_training_sequence: float
    linear_in_rho0: float
    kl_per_dim: float
    z_spread: float
    diversity: float
    real_diversity: float
    random_diversity: float
    n_windows: int

    @property
    def diversity_ratio(self) -> float:
        return self.diversity / self.real_diversity if self.real_diversity else float("nan")


def random_training_motion(heldout: PoseWindows, train: PoseWindows, seed: int = 0) -> torch.Tensor:
    """For each held-out window, the residual motion [N, T, 6] of a random training window (seeded); when the
    two sets share clip ids (the same windows passed twice), a window of another clip is drawn."""
    rng = np.random.default_rng([seed, 0x5EC])
    same = train.pose.shape == heldout.pose.shape and torch.equal(train.pose, heldout.pose)
    res = train.pose[:, 1:] - train.pose[:, :1]
    picks = []
    for i in range(len(heldout)):
        pool = np.flatnonzero(train.clip.numpy() != int(heldout.clip[i])) if same else np.arange(len(train))
        picks.append(int(rng.choice(pool if len(pool) else np.arange(len(train)))))
    return res[torch.as_tensor(picks)]


def linear_ref_pose_motion(heldout: PoseWindows, train: PoseWindows) -> torch.Tensor:
    """The ``linear_in_rho0`` baseline: Delta rho [N, T, 6] of each held-out window predicted by an affine map of its
    rho_0 [6], fitted by least squares (float64) on the training windows' (rho_0, Delta rho). T must match."""
    def design(w: PoseWindows) -> torch.Tensor:
        ref = w.pose[:, 0].double()
        return torch.cat([ref, torch.ones(len(ref), 1, dtype=ref.dtype)], 1)  # [N, 7]

    res = (train.pose[:, 1:] - train.pose[:, :1]).double().reshape(len(train), -1)  # [N_train, T * 6]
    coef = torch.linalg.lstsq(design(train), res).solution  # [7, T * 6]
    t = heldout.pose.shape[1] - 1
    return (design(heldout) @ coef).reshape(len(heldout), t, -1).to(heldout.pose.dtype)


def _window_diversity(motion: torch.Tensor) -> float:
    """Mean over windows of ``metrics.diversity`` of the three angles of rho_0 + motion (motion [N, T, 6])."""
    from ..metrics.diversity import diversity

    m = torch.cat([torch.zeros_like(motion[:, :1]), motion], 1)[..., :ANGLE_DIM].numpy()
    return float(np.mean([diversity(w) for w in m]))


@torch.no_grad()
def decode_windows(model: PoseVAE, windows: PoseWindows, z: torch.Tensor | None = None,
                   config: PoseVAETrainConfig | None = None, batch_size: int = 64) -> torch.Tensor:
    """The decoder alone (inference path) on every window: Delta rho' [N, T, 6] given rho_0, audio and style;
    ``z`` [N, 64] (None: z = 0, the prior's mean). Model and windows in the same units."""
    config = config or PoseVAETrainConfig()
    windows = _with_embeddings(model, windows)
    was = model.training
    model.eval()
    z = torch.zeros(len(windows), model.config.latent_size) if z is None else z
    dev = next(model.parameters()).device  # windows on the CPU, the model maybe on a GPU: the result on the CPU
    out = []
    for s in range(0, len(windows), batch_size):
        sl = slice(s, s + batch_size)
        ref_c, emb_c, style_c = _conditions(*(x[sl].to(dev) for x in (windows.pose, windows.audio_emb, windows.style)),
                                            config)
        out.append(model.decoder(z[sl].to(dev), ref_c, emb_c, style_c).cpu())
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def evaluate_pose_heldout(model: PoseVAE, heldout: PoseWindows, train: PoseWindows,
                          config: PoseVAETrainConfig | None = None, seed: int = 0,
                          batch_size: int = 64) -> PoseHeldoutMetrics:
    """The held-out numbers of the module docstring. ``model`` and both window sets in the same (raw) units;
    held-out windows carry ``audio_emb`` or ``mel``. Deterministic for ``seed``."""
    config = config or PoseVAETrainConfig()
    heldout = _with_embeddings(model, heldout)  # (train: only its poses are used)
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    gt = heldout.pose[:, 1:] - heldout.pose[:, :1]  # Delta rho [N, T, 6]
    dev = next(model.parameters()).device
    n, d = len(heldout), model.config.latent_size
    mean = decode_windows(model, heldout, None, config, batch_size)
    s1 = decode_windows(model, heldout, torch.randn(n, d, generator=g), config, batch_size)
    s2 = decode_windows(model, heldout, torch.randn(n, d, generator=g), config, batch_size)
    kls = []
    for s in range(0, n, batch_size):
        sl = slice(s, s + batch_size)
        ref_c, emb_c, style_c = _conditions(*(x[sl].to(dev) for x in (heldout.pose, heldout.audio_emb, heldout.style)),
                                            config)
        mu, logvar = model.encoder(gt[sl].to(dev), ref_c, emb_c, style_c)
        kls.append(float(kl_loss(mu, logvar)) * len(mu))
    rand = random_training_motion(heldout, train, seed)
    model.train(was)

    def mse(pred):
        return float((pred - gt).pow(2).mean())

    return PoseHeldoutMetrics(
        pose_mse=mse(mean), pose_mse_sampled=mse(s1), still_head=mse(torch.zeros_like(gt)),
        random_training_sequence=mse(rand), linear_in_rho0=mse(linear_ref_pose_motion(heldout, train)),
        kl_per_dim=sum(kls) / len(heldout),
        z_spread=float((s1 - s2).pow(2).mean().sqrt() / gt.pow(2).mean().sqrt()),
        diversity=_window_diversity(s1), real_diversity=_window_diversity(gt), random_diversity=_window_diversity(rand),
        n_windows=len(heldout))


def pose_heldout_report(m: PoseHeldoutMetrics, split: Mapping | None = None) -> HeldoutReport:
    """``heldout.json`` of the PoseVAE stage (``train/heldout.py``)."""
    metrics = {
        "pose_mse": HeldoutMetric(m.pose_mse, {"still_head": m.still_head,
                                               "random_training_sequence": m.random_training_sequence,
                                               "linear_in_rho0": m.linear_in_rho0},
                                  label=POSE_MSE_LABEL),
        "pose_mse_sampled": HeldoutMetric(m.pose_mse_sampled, {"still_head": m.still_head,
                                                               "random_training_sequence": m.random_training_sequence},
                                          label="as pose_mse, one draw z ~ N(0, I) per window"),
        "diversity_ratio": HeldoutMetric(m.diversity_ratio, {"still_head": 0.0,
                                                             "random_training_sequence":
                                                                 m.random_diversity / m.real_diversity},
                                         lower_is_better=False,
                                         label="Diversity [pose angles, per 33-frame window] of samples / of the "
                                               "real held-out motion (target >= 0.5)"),
        "kl_per_dim_nats": HeldoutMetric(m.kl_per_dim, {"collapsed_posterior": 0.0}, lower_is_better=False,
                                         label="held-out KL(q(z|x) || N(0, I)) per latent dim; ~0: z unused"),
        "z_spread": HeldoutMetric(m.z_spread, {"collapsed_posterior": 0.0}, lower_is_better=False,
                                  label="RMS(sample_1 - sample_2) / RMS(real residual); 0: z unused"),
    }
    return HeldoutReport(stage="posevae", metrics=metrics, split=dict(split or {}))


# --- Whole-clip metrics: diversity and beat alignment (Table 4) -------------------------------------------------------
@dataclass
class PoseClipMetrics:
    """Per-clip means over generated clips. diversity: mean over angles of the std over time (radians,
    ``metrics.diversity``); beat_align: Bailando's Beat Align Score of the head angles against the speech onsets
    (``metrics.beat_align``; a stand-in: pose angles, not Hopenet on video); beat_align_chance: the score of the
    same motion beats at every offset against the audio (``metrics.beat_align.chance_beat_align``; Beat Align
    rises with the number of motion beats alone, so ``beat_align - beat_align_chance`` is what the beats' timing
    earns); beats_per_s: motion beats per second; real_*: the same for the corpus motion of those clips; style:
    how styles were picked."""

    diversity: float
    beat_align: float
    real_diversity: float
    real_beat_align: float
    style: str
    per_clip: list[dict]
    beat_align_chance: float = float("nan")
    beats_per_s: float = float("nan")
    real_beat_align_chance: float = float("nan")
    real_beats_per_s: float = float("nan")

    @property
    def beat_align_above_chance(self) -> float:
        return self.beat_align - self.beat_align_chance


def evaluate_posevae_clips(model: PoseVAE, clips: Sequence[Mapping], style: str = "fixed", fixed_style: int = 0,
                           seed: int = 0, num_styles: int | None = None, *, audio: str = "own",
                           draws: int = 1) -> PoseClipMetrics:
    """Generate every clip's head motion with the inference path (``audio2coeff.predict_pose``: 32-frame chunks,
    z ~ N(0, I), savgol smoothing) and score it.

    clips: dicts with ``mel`` [T, 1, 80, 16], ``coeffs`` [T, 70] (rho_0 = frame 0's pose; the rest is the real
    motion for the reference numbers), ``audio`` (16 kHz) and ``style_id``. style: "fixed" (every clip with
    ``fixed_style``: Table 4 "Single Fixed Style"), "mixed" (a randomly selected style per clip out of
    ``num_styles``, default the styles present in ``clips``: "Mixed Style") or "own" (each clip's own style).
    audio: "own" (each clip's mel) or "shuffled" (the mel of the next clip in ``clips``, tiled to this clip's
    length: the same model and audio statistics, the timing broken; Beat Align is still scored against the clip's
    own audio: the control for "does the motion follow *this* audio"). draws: z draws per clip (metrics averaged
    over them; more draws, less sampling noise in Beat Align).
    """
    from ..audio2coeff import predict_pose
    from ..metrics.beat_align import beat_align
    from ..metrics.diversity import diversity

    if style not in ("fixed", "mixed", "own"):
        raise ValueError(f"style must be 'fixed', 'mixed' or 'own', got {style!r}")
    if audio not in ("own", "shuffled"):
        raise ValueError(f"audio must be 'own' or 'shuffled', got {audio!r}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    pool = sorted({int(c["style_id"]) for c in clips}) if num_styles is None else list(range(num_styles))
    was = model.training
    model.eval()
    rows = []
    for i, c in enumerate(clips):
        coeffs = np.asarray(c["coeffs"], np.float32)
        mel = np.asarray(c["mel"])
        if audio == "shuffled":  # the next clip's mel windows, tiled / cut to this clip's length
            other = np.asarray(clips[(i + 1) % len(clips)]["mel"])
            mel = np.resize(other, (len(mel), *other.shape[1:]))
        mel = torch.as_tensor(mel, dtype=torch.float32)[None]
        sid = {"fixed": fixed_style, "own": int(c["style_id"])}.get(style)
        sid = int(rng.choice(pool)) if sid is None else sid
        real = coeffs[:, ANGLE]
        wav = np.asarray(c["audio"], np.float32)
        row = {"style_id": sid, "real_diversity": diversity(real),
               **{f"real_{k}": v for k, v in _beat_align(beat_align, wav, real).items()}}
        scores = []
        for _ in range(draws):
            angles = predict_pose(model, mel, torch.from_numpy(coeffs[:1])[None], style=sid,
                                  generator=g).pose[0, :, :3].numpy()
            scores.append({"diversity": diversity(angles), **_beat_align(beat_align, wav, angles)})
        row.update({k: float(np.mean([s[k] for s in scores])) for k in scores[0]})
        rows.append(row)
    model.train(was)
    keys = ("diversity",) + _BEAT_KEYS
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys + tuple(f"real_{k}" for k in keys)}
    return PoseClipMetrics(style=style, per_clip=rows, **mean)


_BEAT_KEYS = ("beat_align", "beat_align_chance", "beats_per_s")


def _beat_align(beat_align, wav: np.ndarray, angles: np.ndarray) -> dict[str, float]:
    """Beat Align of head ``angles`` [T, 3] (25 fps) against ``wav`` (16 kHz): score, chance level of the same
    motion beats at every offset against the audio, motion beats per second; NaN where the clip has no audio beat."""
    try:
        r = beat_align(wav, SAMPLE_RATE, angles, FPS)
    except ValueError:  # no audio beat within the clip
        return dict.fromkeys(_BEAT_KEYS, float("nan"))
    return dict(zip(_BEAT_KEYS, (r.score, r.chance, r.beats_per_s(FPS))))
