"""Head motion in distinct styles, and eye blinks, for the default corpus.

PoseVAE learns *styles* of head motion (paper Sec. 3.2: a style one-hot picks among the training speakers'
habits) conditioned on audio. The default corpus therefore needs motion that (a) differs clearly between style
ids, (b) follows the speech (moves more while speaking, nods on syllable onsets), (c) is reproducible from a
seed. Each style below is a small recipe: band-limited free motion (a sum of sinusoids with random phases),
scaled by the speech energy, plus style-specific gestures (nods, shakes, glances, a constant tilt).

Pose layout: the official 70-coefficient layout is [exp 64, angle 3, trans 3] with the angles in radians in the
order of Deep3DFaceRecon's ``compute_rotation`` (rotation about x, y, z), i.e. ``POSE_NAMES`` =
(pitch, yaw, roll, tx, ty, tz). Translations are in the morphable model's units (camera at distance 10).

Blinks have the official shape (``sadtalker_lib.blink.BLINK_SHAPE``: 5 frames, 1 = closed) at gamma-distributed
intervals set by the style's blink rate, instead of the official uniform gaps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blink import BLINK_SHAPE
from ..audio import DEFAULT_CONFIG
from ..coeffs import EXP_DIM
from .visemes import BLINK_DIMS, EXPRESSION_DIMS, FPS

__all__ = [
    "POSE_NAMES", "MotionStyle", "MOTION_STYLES", "STYLE_IDS", "style_id", "speech_energy", "head_motion",
    "blink_ratio", "blink_expression", "Motion", "generate_motion", "motion_features",
]

POSE_NAMES = ("pitch", "yaw", "roll", "tx", "ty", "tz")  # Deep3DFaceRecon angle order (x, y, z), then trans


@dataclass(frozen=True)
class MotionStyle:
    """One head-motion habit. Angles in radians, frequencies in Hz, translations in model units.

    amplitude: std of the free motion of (pitch, yaw, roll). band_hz: its frequency band.
    bias: constant (pitch, yaw, roll) offset. energy_gain: 0 = motion ignores speech, 1 = scales with it.
    nod: downward pitch bump per speech onset. shake: amplitude of a yaw oscillation while speaking (at
    shake_hz). glance: amplitude of held yaw/pitch targets that change every 1-2.5 s (looking around).
    translation: std of (tx, ty, tz). blinks_per_min: mean blink rate.
    """

    name: str
    amplitude: tuple[float, float, float]
    band_hz: tuple[float, float]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    energy_gain: float = 0.3
    nod: float = 0.0
    shake: float = 0.0
    shake_hz: float = 1.8
    glance: float = 0.0
    translation: tuple[float, float, float] = (0.01, 0.01, 0.01)
    blinks_per_min: float = 15.0


MOTION_STYLES: tuple[MotionStyle, ...] = (
    MotionStyle("calm", (0.015, 0.02, 0.01), (0.1, 0.4), energy_gain=0.3),
    MotionStyle("nodding", (0.02, 0.015, 0.01), (0.2, 0.6), energy_gain=0.5, nod=0.12, blinks_per_min=18),
    MotionStyle("swaying", (0.015, 0.1, 0.08), (0.08, 0.25), energy_gain=0.2, translation=(0.03, 0.01, 0.01)),
    MotionStyle("energetic", (0.05, 0.07, 0.035), (0.6, 1.8), energy_gain=1.0, nod=0.05,
                translation=(0.03, 0.03, 0.04), blinks_per_min=22),
    MotionStyle("shaking", (0.01, 0.02, 0.01), (0.15, 0.4), energy_gain=0.3, shake=0.09, blinks_per_min=16),
    MotionStyle("tilted", (0.015, 0.02, 0.02), (0.1, 0.3), bias=(0.06, 0.0, 0.16), energy_gain=0.3,
                blinks_per_min=12),
    MotionStyle("still", (0.004, 0.004, 0.003), (0.1, 0.3), energy_gain=0.0, translation=(0.002, 0.002, 0.002),
                blinks_per_min=8),
    MotionStyle("looking_around", (0.01, 0.01, 0.01), (0.1, 0.3), energy_gain=0.2, glance=0.25,
                blinks_per_min=20),
)
STYLE_IDS: dict[str, int] = {s.name: i for i, s in enumerate(MOTION_STYLES)}


def style_id(style: int | str) -> int:
    """Style index from a name or an index (checked)."""
    if isinstance(style, str):
        if style not in STYLE_IDS:
            raise ValueError(f"unknown motion style {style!r}; choose one of {list(STYLE_IDS)}")
        return STYLE_IDS[style]
    if not 0 <= int(style) < len(MOTION_STYLES):
        raise ValueError(f"style id must be in [0, {len(MOTION_STYLES) - 1}], got {style}")
    return int(style)


def speech_energy(samples: np.ndarray | None, n_frames: int, sample_rate: int = DEFAULT_CONFIG.sample_rate,
                  fps: float = FPS) -> np.ndarray:
    """Loudness envelope per video frame ``float32 [T]`` in [0, 1] (log RMS over each 1/fps window).

    None gives a constant 0.5 (no audio coupling).
    """
    if samples is None:
        return np.full(n_frames, 0.5, np.float32)
    hop = sample_rate / fps
    x = np.asarray(samples, np.float32)
    rms = np.array([np.sqrt(np.mean(x[int(i * hop): int((i + 1) * hop)] ** 2) + 1e-12) if int(i * hop) < len(x)
                    else 0.0 for i in range(n_frames)])
    db = 20 * np.log10(rms + 1e-5)  # -100 dB (silence) .. 0 dB (full scale)
    top = np.percentile(db, 95) if n_frames else 0.0
    return np.clip((db - (top - 40.0)) / 40.0, 0.0, 1.0).astype(np.float32)  # 40 dB of dynamic range


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    return np.convolve(np.pad(x, width, mode="edge"), k / k.sum(), mode="same")[width:-width]


def _band_noise(rng: np.random.Generator, n_frames: int, band_hz: tuple[float, float], fps: float,
                n_waves: int = 6) -> np.ndarray:
    """Unit-variance band-limited motion [T]: sinusoids with log-uniform frequencies and random phases."""
    t = np.arange(n_frames) / fps
    freqs = np.exp(rng.uniform(np.log(band_hz[0]), np.log(band_hz[1]), n_waves))
    phases = rng.uniform(0, 2 * np.pi, n_waves)
    amps = rng.uniform(0.5, 1.0, n_waves)
    wave = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return wave / np.sqrt((amps ** 2).sum() / 2)  # variance of the infinite sum is sum(a^2)/2


def _onsets(energy: np.ndarray, min_gap: int = 8) -> list[int]:
    """Frames where the smoothed energy rises fastest (syllable / word onsets), at least ``min_gap`` apart."""
    rise = np.maximum(np.diff(_smooth(energy, 3), prepend=energy[:1]), 0.0)
    onsets: list[int] = []
    for i in np.argsort(-rise):
        if rise[i] < 0.08:
            break
        if all(abs(i - j) >= min_gap for j in onsets):
            onsets.append(int(i))
    return sorted(onsets)


def _bumps(n_frames: int, at: list[int], heights: np.ndarray, width: int) -> np.ndarray:
    kernel = np.sin(np.linspace(0, np.pi, width)) ** 2
    out = np.zeros(n_frames + width)
    for i, h in zip(at, heights):
        out[i: i + width] += h * kernel
    return out[:n_frames]


def _glances(rng: np.random.Generator, n_frames: int, amplitude: float, fps: float) -> np.ndarray:
    """Held targets that change every 1-2.5 s with quick (~0.3 s) transitions."""
    targets, t = [], 0
    while t < n_frames:
        hold = int(rng.uniform(1.0, 2.5) * fps)
        targets.append(np.full(hold, rng.uniform(-amplitude, amplitude)))
        t += hold
    return _smooth(np.concatenate(targets)[:n_frames], int(0.3 * fps))


def head_motion(n_frames: int, style: int | str = 0, seed: int = 0, energy: np.ndarray | None = None,
                fps: float = FPS) -> np.ndarray:
    """Head pose ``float32 [T, 6]`` = (pitch, yaw, roll, tx, ty, tz) for one style; deterministic in ``seed``.

    energy: speech loudness per frame [T] in [0, 1] (``speech_energy``); None = no audio coupling.
    """
    sid = style_id(style)
    st = MOTION_STYLES[sid]
    rng = np.random.default_rng([int(seed), sid, 0x0F05E])
    e = np.full(n_frames, 0.5) if energy is None else np.asarray(energy, np.float64)[:n_frames]
    if e.shape[0] != n_frames:
        raise ValueError(f"energy has {e.shape[0]} frames, expected {n_frames}")
    e_slow = _smooth(e, int(0.4 * fps))
    gain = np.clip(1.0 + st.energy_gain * 2.0 * (e_slow - 0.5), 0.2, None)  # louder speech -> larger motion
    angles = np.stack([a * _band_noise(rng, n_frames, st.band_hz, fps) for a in st.amplitude], 1) * gain[:, None]
    onsets = _onsets(e) if energy is not None else list(range(int(fps), n_frames, int(1.2 * fps)))
    if st.nod:  # pitch down-up bumps starting at speech onsets (positive pitch = chin down, see render.py)
        heights = st.nod * rng.uniform(0.6, 1.0, len(onsets))
        angles[:, 0] += _bumps(n_frames, onsets, heights, int(0.4 * fps))
    if st.shake:  # side-to-side oscillation while speaking
        t = np.arange(n_frames) / fps
        angles[:, 1] += st.shake * e_slow * np.sin(2 * np.pi * st.shake_hz * t + rng.uniform(0, 2 * np.pi))
    if st.glance:
        angles[:, 1] += _glances(rng, n_frames, st.glance, fps)
        angles[:, 0] += _glances(rng, n_frames, 0.3 * st.glance, fps)
    angles += np.asarray(st.bias)[None]
    # translation follows the rotation a little (the neck pivots) plus its own slow drift
    trans = np.stack([s * _band_noise(rng, n_frames, (0.05, 0.3), fps) for s in st.translation], 1)
    trans[:, 0] += 0.3 * (angles[:, 1] - st.bias[1])
    trans[:, 1] += -0.3 * (angles[:, 0] - st.bias[0])
    return np.concatenate([angles, trans], 1).astype(np.float32)


def blink_ratio(n_frames: int, seed: int = 0, blinks_per_min: float = 15.0, fps: float = FPS) -> np.ndarray:
    """Eye-closure ratio ``float32 [T]`` (0 open, 1 closed): 5-frame blinks at gamma-distributed intervals."""
    rng = np.random.default_rng([int(seed), 0xB11C])
    ratio = np.zeros(n_frames, np.float32)
    mean_gap = 60.0 * fps / max(blinks_per_min, 1e-3)
    t = int(rng.uniform(0.1, 0.7) * mean_gap)
    while t + len(BLINK_SHAPE) <= n_frames:
        ratio[t: t + len(BLINK_SHAPE)] = BLINK_SHAPE
        t += len(BLINK_SHAPE) + max(int(0.4 * fps), int(rng.gamma(4.0, mean_gap / 4.0)))
    return ratio


def blink_expression(ratio: np.ndarray, n_exp: int = EXP_DIM) -> np.ndarray:
    """Blink ratio [T] -> expression coefficients ``float32 [T, 64]`` with only the two blink directions set."""
    ratio = np.asarray(ratio, np.float32)
    exp = np.zeros(ratio.shape + (n_exp,), np.float32)
    for name in BLINK_DIMS:
        exp[..., EXPRESSION_DIMS[name]] = ratio
    return exp


@dataclass
class Motion:
    """Generated motion: pose ``[T, 6]`` (``POSE_NAMES``), blink ratio ``[T]``, blink expression ``[T, 64]``."""

    pose: np.ndarray
    blink: np.ndarray
    blink_exp: np.ndarray
    style_id: int
    style: str


def generate_motion(n_frames: int, style: int | str = 0, seed: int = 0, audio: np.ndarray | None = None,
                    sample_rate: int = DEFAULT_CONFIG.sample_rate, fps: float = FPS) -> Motion:
    """Head pose and blinks for one clip, coupled to ``audio`` (float32 [N] at ``sample_rate``) when given."""
    sid = style_id(style)
    energy = None if audio is None else speech_energy(audio, n_frames, sample_rate, fps)
    pose = head_motion(n_frames, sid, seed, energy, fps)
    blink = blink_ratio(n_frames, seed, MOTION_STYLES[sid].blinks_per_min, fps)
    return Motion(pose=pose, blink=blink, blink_exp=blink_expression(blink), style_id=sid,
                  style=MOTION_STYLES[sid].name)


def motion_features(pose: np.ndarray, fps: float = FPS) -> np.ndarray:
    """Summary statistics of a pose sequence [T, 6], for telling styles apart: ``float32 [12]``.

    Per angle: mean, std, and mean |velocity| (rad/s); then the fraction of yaw energy above 1 Hz,
    the pitch/yaw std ratio, and the share of yaw variance held in slow (<0.5 Hz) steps.
    """
    ang = np.asarray(pose, np.float64)[:, :3]
    vel = np.abs(np.diff(ang, axis=0)).mean(0) * fps
    spec = np.abs(np.fft.rfft(ang[:, 1] - ang[:, 1].mean())) ** 2
    f = np.fft.rfftfreq(len(ang), 1 / fps)
    high = spec[f > 1.0].sum() / (spec.sum() + 1e-12)
    slow = spec[f < 0.5].sum() / (spec.sum() + 1e-12)
    ratio = ang[:, 0].std() / (ang[:, 1].std() + 1e-9)
    return np.concatenate([ang.mean(0), ang.std(0), vel, [high, ratio, slow]]).astype(np.float32)
