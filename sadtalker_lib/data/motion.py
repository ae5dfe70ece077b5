"""Head motion in distinct styles, eye blinks and audio-irrelevant expression motion, for the default corpus.

PoseVAE learns *styles* of head motion (paper Sec. 3.2: a style one-hot picks among the training speakers'
habits) conditioned on audio, with a latent z for what the audio does not decide. The default corpus therefore
needs motion that (a) differs clearly between style ids, (b) is partly locked to the speech, (c) is partly
random, (d) is reproducible from a seed. ``head_motion`` has three parts, each with a strength: audio-independent
"free" motion (band-limited sinusoids with random phases, glances, shakes: what z must carry), a loudness
coupling (louder -> larger), and speech-locked nods: strokes that reach an extreme and pause on each accent of
the speech (``nod_frames``: the audio's onset peaks, the loudness rises, or the stressed syllables from eSpeak
NG's phoneme times), alternately chin down and up from a random start (their phase), with a per-style amplitude
(``MotionStyle.nod``); the free motion slows down on the accents too, so the whole head pauses there (the
motion beats of Beat Align, ``metrics.beat_align``, fall on the speech's beats).

``expression_drift`` is the face's own motion that the audio cannot predict (brows, lids, cheeks drifting,
smile episodes): the default corpus adds it to the "real" coefficients and not to the lip-only target, as a
real video's fitted coefficients differ from Wav2Lip's lip-only ones (paper Eq. 3, Table 3). ``pause_breaths`` is
audio-irrelevant motion of the mouth itself: the jaw opens for a breath in the speech's pauses (a lip-only target
made from the audio keeps the lips at rest there); unlike the drifts, its timing follows the audio.

Pose layout: the official 70-coefficient layout is [exp 64, angle 3, trans 3] with the angles in radians in the
order of Deep3DFaceRecon's ``compute_rotation`` (rotation about x, y, z), i.e. ``POSE_NAMES`` =
(pitch, yaw, roll, tx, ty, tz). Translations are in the morphable model's units (camera at distance 10).

Blinks have the official shape (``sadtalker_lib.blink.BLINK_SHAPE``: 5 frames, 1 = closed) at gamma-distributed
intervals set by the style's blink rate, instead of the official uniform gaps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..blink import BLINK_SHAPE
from ..audio import DEFAULT_CONFIG
from ..coeffs import EXP_DIM
from .visemes import BLINK_DIMS, EXPRESSION_DIMS, FPS, is_vowel

__all__ = [
    "POSE_NAMES", "MotionStyle", "MOTION_STYLES", "STYLE_IDS", "style_id", "speech_energy", "head_motion",
    "stressed_syllables", "NOD_SOURCES", "NOD_DIRECTIONS", "nod_frames", "DRIFT_DIRECTIONS", "SMILE_DIRECTION",
    "expression_drift", "BREATH_MIN_PAUSE_MS", "pause_breaths", "blink_ratio", "blink_expression", "Motion",
    "generate_motion", "motion_features",
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
    MotionStyle("calm", (0.015, 0.02, 0.01), (0.1, 0.4), energy_gain=0.3, nod=0.03),
    MotionStyle("nodding", (0.02, 0.015, 0.01), (0.2, 0.6), energy_gain=0.5, nod=0.12, blinks_per_min=18),
    MotionStyle("swaying", (0.015, 0.1, 0.08), (0.08, 0.25), energy_gain=0.2, nod=0.03,
                translation=(0.03, 0.01, 0.01)),
    MotionStyle("energetic", (0.05, 0.07, 0.035), (0.6, 1.8), energy_gain=1.0, nod=0.07,
                translation=(0.03, 0.03, 0.04), blinks_per_min=22),
    MotionStyle("shaking", (0.01, 0.02, 0.01), (0.15, 0.4), energy_gain=0.3, nod=0.02, shake=0.09,
                blinks_per_min=16),
    MotionStyle("tilted", (0.015, 0.02, 0.02), (0.1, 0.3), bias=(0.06, 0.0, 0.16), energy_gain=0.3, nod=0.05,
                blinks_per_min=12),
    MotionStyle("still", (0.004, 0.004, 0.003), (0.1, 0.3), energy_gain=0.0, translation=(0.002, 0.002, 0.002),
                blinks_per_min=8),
    MotionStyle("looking_around", (0.01, 0.01, 0.01), (0.1, 0.3), energy_gain=0.2, nod=0.03, glance=0.25,
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
                n_waves: int = 6, clock: np.ndarray | None = None) -> np.ndarray:
    """Unit-variance band-limited motion [T]: sinusoids with log-uniform frequencies and random phases.

    clock: the time of each frame in frames [T] (default 0, 1, ...; a warped clock slows the motion locally)."""
    t = (np.arange(n_frames) if clock is None else np.asarray(clock, np.float64)) / fps
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


def stressed_syllables(phonemes, n_frames: int, fps: float = FPS, min_gap: int = 8,
                       length_ratio: float = 1.15) -> list[int]:
    """Frames of the stressed syllables' vowels, from eSpeak NG phonemes [(IPA name, start_ms, end_ms)].

    eSpeak's phoneme events carry no stress marks, so stress is read from duration, its main cue in speech:
    a vowel is stressed when it is long (``ː``) or lasts ``length_ratio`` x the utterance's median vowel. Longest
    first, at least ``min_gap`` frames apart; the frame is the vowel's start (the syllable nucleus onset).
    """
    vowels = [(float(s), float(e) - float(s), "ː" in name) for name, s, e in phonemes if is_vowel(name) and e > s]
    if not vowels:
        return []
    median = float(np.median([d for _, d, _ in vowels]))
    stressed = sorted([v for v in vowels if v[2] or v[1] >= length_ratio * median], key=lambda v: -v[1])
    frames: list[int] = []
    for start, _, _ in stressed:
        i = int(round(start * fps / 1000.0))
        if 0 <= i < n_frames and all(abs(i - j) >= min_gap for j in frames):
            frames.append(i)
    return sorted(frames)


def _strokes(n_frames: int, anchors: list[int], heights: np.ndarray, lead: int) -> np.ndarray:
    """Head strokes ``[T]`` that reach ``heights[k]`` at ``anchors[k]`` and pause there: cosine easing between
    consecutive knots (speed 0 at every anchor), from / back to 0 over ``lead`` frames before the first / after
    the last anchor."""
    out = np.zeros(n_frames)
    if not len(anchors):
        return out
    knots = [(anchors[0] - lead, 0.0)] + [(int(a), float(h)) for a, h in zip(anchors, heights)]
    knots.append((anchors[-1] + lead, 0.0))
    t = np.arange(n_frames)
    for (ta, va), (tb, vb) in zip(knots[:-1], knots[1:]):
        inside = (t >= ta) & (t < tb)
        u = (t[inside] - ta) / max(tb - ta, 1)
        out[inside] = va + (vb - va) * (1 - np.cos(np.pi * u)) / 2
    return out


def _glances(rng: np.random.Generator, n_frames: int, amplitude: float, fps: float) -> np.ndarray:
    """Held targets that change every 1-2.5 s with quick (~0.3 s) transitions."""
    targets, t = [], 0
    while t < n_frames:
        hold = int(rng.uniform(1.0, 2.5) * fps)
        targets.append(np.full(hold, rng.uniform(-amplitude, amplitude)))
        t += hold
    return _smooth(np.concatenate(targets)[:n_frames], int(0.3 * fps))


PAUSE_WIDTH_FRAMES, PAUSE_DEPTH = 2.5, 0.9  # the free motion slows by up to 90% within ~+-2.5 frames of an accent
NOD_MIN_GAP = 12  # frames between speech-locked nods (~0.5 s: Beat Align smooths the head speed over 5 frames)


NOD_SOURCES = ("onsets", "energy", "stress")
NOD_DIRECTIONS = ("alternate", "down")  # head_motion's nod shapes


def nod_frames(n_frames: int, energy: np.ndarray | None = None, phonemes=None, fps: float = FPS, *,
               audio: np.ndarray | None = None, sample_rate: int = DEFAULT_CONFIG.sample_rate,
               source: str = "energy") -> list[int]:
    """Where the speech-locked nods peak (the speech's accents), by ``source``:

    "onsets": the onset-strength peaks of ``audio`` (``metrics.beat_align.audio_beats``: librosa-style spectral
    flux, peak-picked as Bailando does; the audio beats of Beat Align); "energy": the loudness rises of
    ``energy`` [T], ``NOD_MIN_GAP`` frames apart; "stress": the stressed syllables of ``phonemes``. Without what
    the source needs: the loudness rises, else (no audio) every 1.2 s from 1 s on.
    """
    if source not in NOD_SOURCES:
        raise ValueError(f"nod source must be one of {NOD_SOURCES}, got {source!r}")
    if source == "onsets" and audio is not None:
        from ..metrics.beat_align import audio_beats

        return [int(b) for b in audio_beats(np.asarray(audio, np.float32), sample_rate, fps) if b < n_frames]
    if source == "stress" and phonemes is not None:
        return stressed_syllables(phonemes, n_frames, fps, min_gap=NOD_MIN_GAP)
    if energy is not None:
        return _onsets(np.asarray(energy, np.float64)[:n_frames], min_gap=NOD_MIN_GAP)
    return list(range(int(fps), n_frames, int(1.2 * fps)))


def head_motion(n_frames: int, style: int | str = 0, seed: int = 0, energy: np.ndarray | None = None,
                fps: float = FPS, *, nods_at: list[int] | None = None, nod_scale: float = 1.0,
                energy_scale: float = 1.0, free_scale: float = 1.0, nod_direction: str = "alternate") -> np.ndarray:
    """Head pose ``float32 [T, 6]`` = (pitch, yaw, roll, tx, ty, tz) for one style; deterministic in ``seed``.

    Three parts, each with its own random stream (so a scale of 0 leaves the others unchanged):

    * audio-independent ("free") motion, ``free_scale``: band-limited sinusoids with random phases, glances,
      the translation drift, the style's shake (random phase); the style's constant ``bias`` is kept;
    * loudness coupling, ``energy_scale``: louder speech -> larger free motion (the style's ``energy_gain``);
      ``energy``: loudness per frame [T] in [0, 1] (``speech_energy``), None = no coupling;
    * pauses on the accents, with the nods (depth ``PAUSE_DEPTH`` x min(``nod_scale``, 1)): the free motion runs
      on a clock that slows down near each accent, so the whole head is still there;
    * speech-locked nods, ``nod_scale``: pitch strokes that reach an extreme at each frame of ``nods_at``
      (default :func:`nod_frames` of ``energy``) and pause there, alternately chin down and chin up (which
      first is random: the nods' phase), of height ``style.nod`` x 0.6-1.0; so the head is still on the
      accents and moves between them (the motion beats of Beat Align fall on the speech beats).
      ``nod_direction`` (``NOD_DIRECTIONS``): "alternate" as just said, so the signed nod motion given the audio
      averages to zero over the random phase; "down": every nod a chin-down stroke that peaks on its accent and
      is back at rest halfway to the next, so the audio fixes the nods' sign as well as their timing.
    """
    if nod_direction not in NOD_DIRECTIONS:
        raise ValueError(f"nod_direction must be one of {NOD_DIRECTIONS}, got {nod_direction!r}")
    sid = style_id(style)
    st = MOTION_STYLES[sid]
    rngs = [np.random.default_rng([int(seed), sid, 0x0F05E, k]) for k in range(5)]  # free, nod, shake, glance, trans
    e = np.full(n_frames, 0.5) if energy is None else np.asarray(energy, np.float64)[:n_frames]
    if e.shape[0] != n_frames:
        raise ValueError(f"energy has {e.shape[0]} frames, expected {n_frames}")
    e_mix = np.clip(0.5 + energy_scale * (_smooth(e, int(0.4 * fps)) - 0.5), 0.0, 1.0)
    gain = np.clip(1.0 + st.energy_gain * 2.0 * (e_mix - 0.5), 0.2, None)  # louder speech -> larger motion
    anchors = nod_frames(n_frames, energy, fps=fps) if nods_at is None else sorted(int(i) for i in nods_at)
    # the head pauses on the accents: the free motion runs on a clock that slows down around each anchor
    pause = np.zeros(n_frames)
    for a in anchors:
        pause = np.maximum(pause, np.exp(-0.5 * ((np.arange(n_frames) - a) / PAUSE_WIDTH_FRAMES) ** 2))
    rate = 1.0 - min(nod_scale, 1.0) * PAUSE_DEPTH * pause
    clock = np.cumsum(rate) - rate[0]
    clock *= (n_frames - 1) / max(clock[-1], 1e-9) if n_frames > 1 else 1.0  # same mean speed, same duration
    angles = np.stack([a * _band_noise(rngs[0], n_frames, st.band_hz, fps, clock=clock) for a in st.amplitude], 1)
    angles *= free_scale * gain[:, None]
    if st.shake:  # side-to-side oscillation, larger while speaking
        t = clock / fps
        angles[:, 1] += free_scale * st.shake * e_mix * np.sin(2 * np.pi * st.shake_hz * t + rngs[2].uniform(0, 6.3))
    if st.glance:
        angles[:, 1] += free_scale * _glances(rngs[3], n_frames, st.glance, fps)
        angles[:, 0] += free_scale * _glances(rngs[3], n_frames, 0.3 * st.glance, fps)
    sign = np.where(np.arange(len(anchors)) % 2 == 0, 1.0, -1.0) * rngs[1].choice((-1.0, 1.0))  # random phase
    heights = st.nod * nod_scale * rngs[1].uniform(0.6, 1.0, len(anchors))
    if nod_direction == "alternate":
        knots, heights = anchors, heights * sign
    else:  # chin down on each accent, back at rest halfway between accents
        rests = [(a + b) // 2 for a, b in zip(anchors[:-1], anchors[1:])]
        knots = sorted(anchors + rests)
        heights = np.array([heights[anchors.index(k)] if k in anchors else 0.0 for k in knots])
    angles[:, 0] += _strokes(n_frames, knots, heights, int(0.4 * fps))  # positive pitch = chin down (render.py)
    angles += np.asarray(st.bias)[None]
    # translation follows the rotation a little (the neck pivots) plus its own slow drift
    trans = np.stack([free_scale * s * _band_noise(rngs[4], n_frames, (0.05, 0.3), fps) for s in st.translation], 1)
    trans[:, 0] += 0.3 * (angles[:, 1] - st.bias[1])
    trans[:, 1] += -0.3 * (angles[:, 0] - st.bias[0])
    return np.concatenate([angles, trans], 1).astype(np.float32)


# audio-irrelevant expression motion of the "real" coefficients: direction -> amplitude (expression units)
DRIFT_DIRECTIONS: dict[str, float] = {"brows_raise": 0.35, "brows_lower": 0.2, "squint": 0.3, "cheek_puff": 0.25,
                                      "nose_wrinkle": 0.15}
SMILE_DIRECTION = "lip_corners_up"


def expression_drift(n_frames: int, seed: int = 0, fps: float = FPS, drift: float = 1.0,
                     smiles: float = 1.0) -> np.ndarray:
    """Audio-irrelevant expression motion ``float32 [T, 64]``, 0 at frame 0 (the reference frame stays the rest).

    drift: scale of slow (0.08-0.5 Hz) random drifts of brows, lids, cheeks, nose (``DRIFT_DIRECTIONS``).
    smiles: scale of smile episodes (``lip_corners_up`` 0.4-0.9, held 0.8-2.5 s, ~0.3 s ramps, about one per
    3.5 s, never in the first 0.3 s). Each part has its own random stream.
    """
    out = np.zeros((n_frames, EXP_DIM), np.float64)
    rng = np.random.default_rng([int(seed), 0xD21F7])
    for name, amp in DRIFT_DIRECTIONS.items():
        wave = _band_noise(rng, n_frames, (0.08, 0.5), fps, n_waves=4)
        out[:, EXPRESSION_DIMS[name]] = drift * amp * (wave - wave[0])
    rng = np.random.default_rng([int(seed), 0x5311E])
    level = np.zeros(n_frames + int(4 * fps))
    t = int(0.3 * fps) + int(rng.gamma(2.0, 1.75 * fps / 2.0))
    while t < n_frames:
        hold, amp = int(rng.uniform(0.8, 2.5) * fps), rng.uniform(0.4, 0.9)
        level[t: t + hold] = np.maximum(level[t: t + hold], amp)
        t += hold + int(rng.gamma(2.0, 3.5 * fps / 2.0))
    ramp = int(0.3 * fps)
    smooth = np.convolve(np.pad(level, (ramp, 0)), np.ones(ramp) / ramp, mode="valid")[:n_frames]
    out[:, EXPRESSION_DIMS[SMILE_DIRECTION]] = smiles * smooth
    return out.astype(np.float32)


BREATH_MIN_PAUSE_MS = 120.0  # pauses at least this long get a breath
BREATH_JAW_OPEN = (0.3, 0.6)  # the breath's jaw opening, in the lip teacher's jaw_open units ("a" = 1)


def pause_breaths(phonemes, n_frames: int, seed: int = 0, fps: float = FPS, scale: float = 1.0) -> np.ndarray:
    """Mouth breaths in the speech's pauses ``float32 [T, 64]`` (``jaw_open`` only), 0 at frame 0.

    phonemes: [(name, start_ms, end_ms)] as eSpeak NG reports them; each pause ("_") of at least
    ``BREATH_MIN_PAUSE_MS`` that starts after 0.3 s gets a sin^2 opening over its frames, peak drawn from
    ``BREATH_JAW_OPEN`` (times the lip teacher's jaw gain ``LIP_TO_EXPRESSION``) x ``scale``. Audio-irrelevant
    (no sound is made) but audio-timed: a model fed the audio can learn to open the mouth in silences, which is what
    a lip-only target spares it (paper Sec. 3.2, ExpNet: "audio-irrelevant motions in the expression coefficients").
    """
    from .visemes import LIP_TO_EXPRESSION

    direction, gain = LIP_TO_EXPRESSION["jaw_open"]
    out = np.zeros((n_frames, EXP_DIM), np.float32)
    if not scale:
        return out
    rng = np.random.default_rng([int(seed), 0xB4EA7])
    frame_ms = 1000.0 / fps
    for name, start, end in phonemes:
        if str(name) != "_" or end - start < BREATH_MIN_PAUSE_MS or start < 300.0:
            continue
        a, b = int(np.ceil(start / frame_ms)), min(int(end // frame_ms), n_frames - 1)
        if b - a < 2:
            continue
        bump = np.sin(np.pi * (np.arange(a, b + 1) - a) / (b - a)) ** 2
        out[a:b + 1, EXPRESSION_DIMS[direction]] += scale * gain * rng.uniform(*BREATH_JAW_OPEN) * bump
    return out


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
    nod_frames: list = field(default_factory=list)  # where the speech-locked nods peak


def generate_motion(n_frames: int, style: int | str = 0, seed: int = 0, audio: np.ndarray | None = None,
                    sample_rate: int = DEFAULT_CONFIG.sample_rate, fps: float = FPS, *, phonemes=None,
                    nod_source: str = "onsets", nod_scale: float = 1.0, energy_scale: float = 1.0,
                    free_scale: float = 1.0, nod_direction: str = "alternate") -> Motion:
    """Head pose and blinks for one clip, coupled to ``audio`` (float32 [N] at ``sample_rate``) when given.

    nod_source / phonemes: where the speech-locked nods fall (:func:`nod_frames`; phonemes: eSpeak NG's
    [(IPA, start_ms, end_ms)] for "stress"). The scales: see :func:`head_motion`.
    """
    sid = style_id(style)
    energy = None if audio is None else speech_energy(audio, n_frames, sample_rate, fps)
    nods = nod_frames(n_frames, energy, phonemes, fps, audio=audio, sample_rate=sample_rate, source=nod_source)
    pose = head_motion(n_frames, sid, seed, energy, fps, nods_at=nods, nod_scale=nod_scale,
                       energy_scale=energy_scale, free_scale=free_scale, nod_direction=nod_direction)
    blink = blink_ratio(n_frames, seed, MOTION_STYLES[sid].blinks_per_min, fps)
    return Motion(pose=pose, blink=blink, blink_exp=blink_expression(blink), style_id=sid,
                  style=MOTION_STYLES[sid].name, nod_frames=nods)


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
