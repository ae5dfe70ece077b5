"""The phenomena of the controlled default corpus: their strengths (:class:`Phenomena`) and how to measure them.

:class:`Phenomena` holds one strength per phenomenon the paper ablates (``default.build_default_corpus`` reads it
and stores it in ``corpus.json["phenomena"]``). :func:`measure_phenomena` reads any corpus folder back and
measures each phenomenon from the stored arrays, so that a change of a knob can be seen in the data:

* ``n_identities`` / ``n_clips``;
* resting expressions: the spread of beta_0 (= ``coeffs[0, EXP]``) between identities (RMS distance of each
  identity's mean beta_0 from the overall mean) and within them, on all 64 dims and without the mouth and blink
  dims ("upper_face": the first frame's lips vary with the first phoneme);
* audio-irrelevant expression: the fraction of the variance of ``coeffs[:, EXP]`` (per clip, over time) that the
  lip-only target ``exp_lip`` does not explain, with and without the blinks, and on the mouth dims alone;
* speech-locked head motion: the correlation of the head's pitch speed with the audio's onset envelope
  (``metrics.beat_align.onset_envelope``, the envelope Beat Align uses), at the best lag in +-6 frames, pooled
  over clips, beside a shuffled control (each clip's pose against the other clips' audio); and Beat Align of the
  corpus pose with its own audio vs with the other clips' audio (and the share of clips whose own audio wins).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import numpy as np

from ...coeffs import EXP, POSE

__all__ = ["Phenomena", "measure_phenomena", "onset_velocity_correlation", "beat_align_matrix"]


@dataclass
class Phenomena:
    """Strength of each phenomenon the paper ablates, in the default corpus (0 removes it; 1 = clearly present).

    identity_variants: face-model variants per real photo (``identities``; 0: the photos only).
    identity_spread: size of the variants' identity / texture coefficients.
    rest_spread: scale of the resting expressions (0: the neutral face everywhere, the same beta_0 for all).
    rest_clip_share: size of the per-clip part of the rest relative to the identity's (a clip's mood).
    expression_drift: audio-irrelevant brow / lid / cheek drifts in the real coefficients (not in ``exp_lip``).
    smiles: audio-irrelevant smile episodes (mouth corners) in the real coefficients (not in ``exp_lip``).
    pause_breaths: the jaw opening for a breath in the speech's pauses, in the real coefficients (not in
    ``exp_lip``; ``motion.pause_breaths``): audio-irrelevant motion of the lips themselves, timed by the audio (on
    since session 23: results/tables_3_4-cpu-default-corpus.md; the renderer figures of earlier sessions in
    results/facerender-motion-cpu-default-corpus.md were measured without it).
    speech_nods: scale of every style's nods at the stressed syllables (``MotionStyle.nod``).
    nod_source: where the nods fall (``motion.nod_frames``): "onsets" (the audio's onset-strength peaks, Beat
    Align's audio beats), "energy" (loudness rises) or "stress" (stressed syllables from eSpeak NG's times).
    nod_direction: the nods' shape (``motion.head_motion``): "alternate" (chin down / up in turn, which first is
    random, so the signed motion given the audio averages to zero) or "down" (a chin-down stroke per accent).
    energy_coupling: scale of the loudness -> motion-amplitude coupling (``MotionStyle.energy_gain``).
    free_motion: scale of the audio-independent head motion (random-phase sinusoids, glances, shakes, drift).
    """

    identity_variants: int = 2
    identity_spread: float = 1.0
    rest_spread: float = 1.0
    rest_clip_share: float = 0.25
    expression_drift: float = 1.0
    smiles: float = 1.0
    pause_breaths: float = 1.0
    speech_nods: float = 1.0
    nod_source: str = "onsets"
    nod_direction: str = "alternate"
    energy_coupling: float = 1.0
    free_motion: float = 1.0

    def __post_init__(self):
        from ..motion import NOD_DIRECTIONS, NOD_SOURCES

        if self.nod_source not in NOD_SOURCES:
            raise ValueError(f"nod_source must be one of {NOD_SOURCES}, got {self.nod_source!r}")
        if self.nod_direction not in NOD_DIRECTIONS:
            raise ValueError(f"nod_direction must be one of {NOD_DIRECTIONS}, got {self.nod_direction!r}")
        bad = [f.name for f in fields(self) if f.name not in ("nod_source", "nod_direction")
               and getattr(self, f.name) < 0]
        if bad:
            raise ValueError(f"phenomenon strengths must be >= 0: {bad}")

    @classmethod
    def none(cls) -> "Phenomena":
        """Every phenomenon off: the real photos only, neutral rest, lips-only coefficients, no head motion."""
        return cls(identity_variants=0, identity_spread=0.0, rest_spread=0.0, rest_clip_share=0.0,
                   expression_drift=0.0, smiles=0.0, pause_breaths=0.0, speech_nods=0.0, energy_coupling=0.0,
                   free_motion=0.0)

    @classmethod
    def coerce(cls, value: "Phenomena | dict | None") -> "Phenomena":
        """A Phenomena from itself, a dict of some fields (the rest default), or None (the defaults)."""
        if value is None:
            return cls()
        return value if isinstance(value, cls) else cls(**dict(value))

    def to_json(self) -> dict:
        return asdict(self)


def _lagged_corr(xs: list[np.ndarray], ys: list[np.ndarray], max_lag: int) -> tuple[float, int]:
    """Pooled Pearson correlation of x[t] with y[t + lag] (each series z-scored per clip), at the lag in
    [-max_lag, max_lag] with the largest |r|: (r, lag)."""
    best = (0.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        a, b = [], []
        for x, y in zip(xs, ys):
            n = min(len(x), len(y))
            lo, hi = max(0, -lag), n - max(0, lag)
            if hi - lo < 3:
                continue
            xa, yb = x[lo:hi], y[lo + lag:hi + lag]
            a.append((xa - xa.mean()) / (xa.std() + 1e-9))
            b.append((yb - yb.mean()) / (yb.std() + 1e-9))
        a, b = (np.concatenate(a), np.concatenate(b)) if a else (np.zeros(1), np.zeros(1))
        if a.std() > 0 and b.std() > 0:
            r = float(np.corrcoef(a, b)[0, 1])
            if np.isfinite(r) and abs(r) > abs(best[0]):
                best = (r, lag)
    return best


def onset_velocity_correlation(poses: list[np.ndarray], audios: list[np.ndarray], sample_rate: int, fps: float,
                               max_lag: int = 6) -> dict:
    """Correlation of the pitch speed (``|pose[:, 0]|`` differences, rad/frame) of each pose [T, 6] with the
    onset envelope of its audio, at the lag with the largest |r|; and the shuffled control (needs >= 2 clips):
    the mean |r| of the poses against the audio of clip k + s, over every shift s = 1 .. N - 1.
    Nods pause on the accents: r < 0 at lag ~0."""
    from ...metrics.beat_align import onset_envelope

    vel = [np.abs(np.diff(np.asarray(p, np.float64)[:, 0], prepend=float(p[0, 0]))) for p in poses]
    env = [onset_envelope(a, sample_rate, fps)[:len(p)] for a, p in zip(audios, poses)]
    r, lag = _lagged_corr(vel, env, max_lag)
    out = {"r": r, "lag_frames": lag}
    if len(poses) > 1:
        out["abs_r_shuffled"] = float(np.mean([abs(_lagged_corr(vel, env[s:] + env[:s], max_lag)[0])
                                               for s in range(1, len(poses))]))
    return out


def beat_align_matrix(poses: list[np.ndarray], audios: list[np.ndarray], sample_rate: int,
                      fps: float) -> np.ndarray:
    """Beat Align of pose i [T, 6] (its angles) with audio j, ``[N, N]`` (both cut to the shorter; NaN where
    the audio has no beat); the diagonal is each clip with its own audio."""
    from ...metrics.beat_align import audio_beats, beat_align_score, motion_beats

    per_frame = int(round(sample_rate / fps))
    beats = [audio_beats(a, sample_rate, fps) for a in audios]
    out = np.full((len(poses), len(audios)), np.nan)
    for i, p in enumerate(poses):
        for j, a in enumerate(audios):
            n = min(len(p), len(a) // per_frame)
            m_beats, vel = motion_beats(np.asarray(p, np.float64)[:n, :3])
            a_beats = beats[j][beats[j] < len(vel)]
            if a_beats.size:
                out[i, j] = beat_align_score(a_beats, m_beats)
    return out


def measure_phenomena(corpus: str | os.PathLike, max_lag: int = 6) -> dict:
    """Measure every phenomenon in a corpus folder (see the module docstring); a flat dict of numbers."""
    from ..visemes import BLINK_DIMS, EXPRESSION_DIMS
    from .format import load_clip, load_index
    from .videos import MOUTH_DIMS

    index = load_index(corpus)
    entries = index["clips"]
    clips = [load_clip(corpus, e) for e in entries]
    people = [e.get("identity_id", 0) for e in entries]
    blink_dims = [EXPRESSION_DIMS[d] for d in BLINK_DIMS]
    # resting expressions: beta_0 per clip
    beta0 = np.stack([c["coeffs"][0, EXP] for c in clips]).astype(np.float64)
    ids = sorted(set(people), key=str)
    means = np.stack([beta0[[p == i for p in people]].mean(0) for i in ids])
    within = np.concatenate([beta0[[p == i for p in people]] - m for i, m in zip(ids, means)])
    face = [d for d in range(beta0.shape[1]) if d not in MOUTH_DIMS and d not in blink_dims]  # no lips, no blinks
    # audio-irrelevant expression: variance over time, per clip
    mouth = list(MOUTH_DIMS)
    tot = irr = irr_nb = tot_m = irr_m = 0.0
    for c in clips:
        real = c["coeffs"][:, EXP].astype(np.float64)
        extra = real - c["exp_lip"].astype(np.float64)
        no_blink = extra.copy()
        no_blink[:, blink_dims] = 0.0
        var = lambda x: float(((x - x.mean(0)) ** 2).sum())  # noqa: E731
        tot, irr, irr_nb = tot + var(real), irr + var(extra), irr_nb + var(no_blink)
        tot_m, irr_m = tot_m + var(real[:, mouth]), irr_m + var(extra[:, mouth])
    sr, fps = int(index["sample_rate"]), float(index["fps"])
    poses = [c["coeffs"][:, POSE] for c in clips]
    audios = [c["audio"] for c in clips]
    corr = onset_velocity_correlation(poses, audios, sr, fps, max_lag)
    out = dict(
        n_clips=len(clips), n_identities=len(ids),
        rest_between_identity_rms=float(np.sqrt(((means - means.mean(0)) ** 2).sum(1).mean())),
        rest_within_identity_rms=float(np.sqrt((within ** 2).sum(1).mean())),
        rest_between_identity_rms_upper_face=float(np.sqrt(((means - means.mean(0))[:, face] ** 2).sum(1).mean())),
        rest_within_identity_rms_upper_face=float(np.sqrt((within[:, face] ** 2).sum(1).mean())),
        irrelevant_expression_fraction=irr / max(tot, 1e-12),
        irrelevant_expression_fraction_without_blinks=irr_nb / max(tot, 1e-12),
        irrelevant_mouth_fraction=irr_m / max(tot_m, 1e-12),
        pitch_velocity_onset_r=corr["r"], pitch_velocity_onset_lag_frames=corr["lag_frames"],
    )
    if len(clips) > 1:
        ba = beat_align_matrix(poses, audios, sr, fps)
        off = ~np.eye(len(clips), dtype=bool)
        wins = [ba[k, k] > np.nanmean(ba[k, off[k]]) for k in range(len(clips)) if np.isfinite(ba[k, k])]
        out.update(pitch_velocity_onset_abs_r_shuffled=corr["abs_r_shuffled"],
                   beat_align_own_audio=float(np.nanmean(np.diag(ba))),
                   beat_align_other_audio=float(np.nanmean(ba[off])),
                   beat_align_own_wins=float(np.mean(wins)) if wins else float("nan"))
    return out
