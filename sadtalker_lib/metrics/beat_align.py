"""Beat Align Score of Bailando (Li et al., CVPR 2022), as SadTalker uses it for head motion (Table 1, 4).

Formula and constants (lisiyao21/Bailando ``utils/beat_align_score.py``):

    BA = 1/|B_a| * sum_{b in B_a} exp( -min_{m in B_m} (m - b)^2 / (2 sigma^2) ),   sigma = 3 frames

(the code writes ``np.exp(-np.min((motion_beats - bb) ** 2) / 2 / 9)``, i.e. sigma^2 = 9), where

* motion beats ``B_m`` (``calc_db``): the motion velocity ``v_t = mean_j || x_{t+1, j} - x_{t, j} ||`` over joints
  ``j``, smoothed by ``scipy.ndimage.gaussian_filter(v, 5)`` (sigma 5 frames), and its strict local minima
  (``scipy.signal.argrelextrema(v, np.less)``). Here the "joints" are the head-motion features of
  ``metrics.head_pose`` (one 3-vector of head angles with the offline default); frames without a face are
  linearly interpolated first;
* audio beats ``B_a`` (``get_mb``): frame indices, at the motion frame rate, of the audio beat track,
  truncated to ``len(v)``. Bailando's music features (``_prepro_aistpp_music.py`` / ``extractor.py``) run
  librosa at ``sr = fps * 512`` so that one onset-envelope hop (512) is one motion frame, take the onset
  strength of the HPSS percussive part (``aggregate=np.median``), and use ``librosa.beat.beat_track`` beats
  (the same ``get_onset_beat`` also computes onset peaks with ``peak_pick(env, 3, 3, 3, 5, 0.5, 10)``).

Speech has no steady tempo, so the default here (``audio_beats="onset_peaks"``) uses the onset peaks of
that envelope (librosa's onset strength re-implemented in numpy: 128-band Slaney mel power spectrogram,
n_fft 2048, hop 512, dB with 80 dB range, positive first difference, median over bands, 3-frame delay
compensation) without HPSS. ``audio_beats="beat_track"`` uses ``librosa.beat.beat_track`` on the same
envelope when librosa is installed (it is not a dependency).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["BeatAlignResult", "beat_align_score", "chance_beat_align", "motion_beats", "motion_velocity",
           "audio_beats", "onset_envelope", "peak_pick", "beat_align", "BA_SIGMA_FRAMES", "MOTION_SMOOTH_SIGMA"]

BA_SIGMA_FRAMES = 3.0  # Bailando utils/beat_align_score.py BA(): exp(-d^2 / 2 / 9)
MOTION_SMOOTH_SIGMA = 5.0  # Bailando calc_db(): gaussian_filter(kinetic_vel, 5)
ONSET_HOP = 512  # Bailando: sampling_rate = fps * 512, librosa default hop_length 512
ONSET_N_FFT = 2048  # librosa default n_fft
ONSET_N_MELS = 128  # librosa melspectrogram default
PEAK_PICK = dict(pre_max=3, post_max=3, pre_avg=3, post_avg=5, delta=0.5, wait=10)  # Bailando extractor.py


@dataclass
class BeatAlignResult:
    """score: Beat Align; chance: :func:`chance_beat_align` of these motion beats (their score with no timing
    relation to the audio: the mean over circular shifts); beats at frame indices; velocity: the smoothed motion
    speed ``[T - 1]``."""

    score: float
    audio_beats: np.ndarray
    motion_beats: np.ndarray
    velocity: np.ndarray
    notes: list[str] = field(default_factory=list)
    chance: float = float("nan")

    @property
    def above_chance(self) -> float:
        """``score - chance``: the part of the score that the timing of the motion beats earns."""
        return self.score - self.chance

    def beats_per_s(self, fps: float) -> float:
        """Motion beats per second of the motion (``len(velocity) + 1`` frames at ``fps``)."""
        return len(self.motion_beats) * fps / (len(self.velocity) + 1)


# ---------------------------------------------------------------------------------------------
# the score
# ---------------------------------------------------------------------------------------------
def beat_align_score(audio_beats, motion_beats, sigma: float = BA_SIGMA_FRAMES) -> float:
    """Bailando's BA: mean over audio beats of ``exp(-(distance to the nearest motion beat)^2 / (2 sigma^2))``.

    No motion beat gives 0 (every term vanishes); no audio beat raises ``ValueError``.
    """
    a = np.asarray(audio_beats, np.float64).ravel()
    m = np.asarray(motion_beats, np.float64).ravel()
    if a.size == 0:
        raise ValueError("Beat Align needs at least one audio beat")
    if m.size == 0:
        return 0.0
    nearest = np.min((m[None, :] - a[:, None]) ** 2, axis=1)
    return float(np.mean(np.exp(-nearest / (2 * sigma**2))))


def chance_beat_align(motion_beats, length: int, sigma: float = BA_SIGMA_FRAMES) -> float:
    """The score these motion beats get with no timing relation to the audio: the mean of
    :func:`beat_align_score`'s term ``exp(-d^2 / (2 sigma^2))`` over every frame of ``length`` as the audio beat,
    with ``d`` the circular distance to the nearest motion beat. It equals the score of any audio beats averaged
    over every circular shift of the motion beats (the same number of beats, the same spacing, every offset
    against the audio equally likely), and takes O(length).

    The score is a recall over audio beats (each audio beat looks for its nearest motion beat), so it grows with
    the number of motion beats alone, and evenly spaced beats cover more frames than clustered ones: a livelier
    or more regular motion scores higher whatever its timing. ``score - chance`` is what the timing earns,
    comparable between motions of different beat density.
    """
    m = np.unique(np.asarray(motion_beats, np.int64).ravel())
    if m.size == 0:
        return 0.0
    if length < 1 or m[0] < 0 or m[-1] >= length:
        raise ValueError(f"motion beats must lie in 0 .. length - 1 = {length - 1}, got {m[0]} .. {m[-1]}")
    ring = np.concatenate([m - length, m, m + length])  # the beats of the neighbouring periods: circular distance
    t = np.arange(length)
    i = np.searchsorted(ring, t)  # ring[i - 1] < t <= ring[i]; 1 <= i <= len(ring) - 1 since m - length < 0 <= t
    d = np.minimum(t - ring[i - 1], ring[i] - t).astype(np.float64)
    return float(np.mean(np.exp(-d**2 / (2 * sigma**2))))


def motion_velocity(features: np.ndarray) -> np.ndarray:
    """``[T, J, C]`` or ``[T, D]`` (one joint) -> ``[T - 1]`` mean joint speed; NaN frames interpolated."""
    x = np.asarray(features, np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or len(x) < 2:
        raise ValueError(f"motion features must be [T, J, C] or [T, D] with T >= 2, got shape {x.shape}")
    flat = x.reshape(len(x), -1)
    ok = np.isfinite(flat).all(axis=1)
    if ok.sum() < 2:
        raise ValueError("Beat Align needs at least 2 frames with a face")
    if not ok.all():
        t = np.arange(len(flat))
        flat = np.stack([np.interp(t, t[ok], flat[ok, k]) for k in range(flat.shape[1])], axis=1)
        x = flat.reshape(x.shape)
    return np.mean(np.sqrt(np.sum((x[1:] - x[:-1]) ** 2, axis=2)), axis=1)


def motion_beats(features: np.ndarray, smooth_sigma: float = MOTION_SMOOTH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(beat frame indices, smoothed velocity ``[T - 1]``): strict local minima of the smoothed speed."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal import argrelextrema

    v = gaussian_filter(motion_velocity(features), smooth_sigma)
    return argrelextrema(v, np.less)[0], v


# ---------------------------------------------------------------------------------------------
# audio beats
# ---------------------------------------------------------------------------------------------
def _slaney_mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa ``filters.mel`` defaults (Slaney scale, ``norm='slaney'``, 0 .. sr/2): ``[n_mels, 1 + n_fft // 2]``."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, None]


def onset_envelope(audio: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    """Onset strength at ``fps`` frames per second (one value per video frame), librosa-style, median over bands."""
    from scipy.signal import resample_poly

    target = int(round(fps * ONSET_HOP))
    ratio = Fraction(target, int(sample_rate))
    y = resample_poly(np.asarray(audio, np.float64), ratio.numerator, ratio.denominator)
    y = np.pad(y, ONSET_N_FFT // 2)  # centred frames (librosa center=True, zero padding)
    n = 1 + (len(y) - ONSET_N_FFT) // ONSET_HOP
    idx = np.arange(ONSET_N_FFT)[None, :] + ONSET_HOP * np.arange(n)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(ONSET_N_FFT) / ONSET_N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(y[idx] * window, axis=1)) ** 2  # [n, 1025]
    mel = power @ _slaney_mel_filters(target, ONSET_N_FFT, ONSET_N_MELS).T  # [n, 128]
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    onset = np.median(np.maximum(0.0, db[1:] - db[:-1]), axis=1)
    delay = 1 + ONSET_N_FFT // (2 * ONSET_HOP)  # lag + n_fft // (2 hop): align with the frame centres
    return np.concatenate([np.zeros(delay), onset])[:n]


def peak_pick(x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float,
              wait: int) -> np.ndarray:
    """librosa ``util.peak_pick`` (greedy): ``x[n] == max(x[n - pre_max : n + post_max])``,
    ``x[n] >= mean(x[n - pre_avg : n + post_avg]) + delta`` and ``n - previous_peak > wait`` (windows truncated at
    the ends, slices as written in librosa's documentation)."""
    x = np.asarray(x, np.float64)
    peaks, last = [], -np.inf
    for n in range(len(x)):
        lo_max, hi_max = max(0, n - pre_max), min(len(x), n + post_max)
        lo_avg, hi_avg = max(0, n - pre_avg), min(len(x), n + post_avg)
        if x[n] == x[lo_max:hi_max].max() and x[n] >= x[lo_avg:hi_avg].mean() + delta and n > last + wait:
            peaks.append(n)
            last = n
    return np.array(peaks, np.int64)


def audio_beats(audio: np.ndarray, sample_rate: int, fps: float, method: str = "onset_peaks") -> np.ndarray:
    """Audio beat frame indices at ``fps``: ``"onset_peaks"`` (default) or ``"beat_track"`` (needs librosa)."""
    env = onset_envelope(audio, sample_rate, fps)
    if method == "onset_peaks":
        return peak_pick(env, **PEAK_PICK)
    if method == "beat_track":
        try:
            import librosa
        except ImportError as e:
            raise ImportError("audio_beats='beat_track' needs librosa (pip install librosa)") from e
        return np.asarray(librosa.beat.beat_track(onset_envelope=env, sr=int(round(fps * ONSET_HOP)))[1], np.int64)
    raise ValueError(f"method must be 'onset_peaks' or 'beat_track', got {method!r}")


def beat_align(audio: np.ndarray, sample_rate: int, motion_features: np.ndarray, fps: float, *,
               method: str = "onset_peaks") -> BeatAlignResult:
    """Beat Align Score of head motion ``[T, ...]`` at ``fps`` against the audio (mono, ``sample_rate``)."""
    m_beats, velocity = motion_beats(motion_features)
    a_beats = audio_beats(audio, sample_rate, fps, method)
    a_beats = a_beats[a_beats < len(velocity)]  # get_mb(key, length): beats[:length]
    if a_beats.size == 0:
        raise ValueError("no audio beat found within the video (silent or too short audio)")
    notes = [] if m_beats.size else ["no head-motion beat (motion has no local velocity minimum): Beat Align = 0"]
    return BeatAlignResult(score=beat_align_score(a_beats, m_beats), audio_beats=a_beats, motion_beats=m_beats,
                           velocity=velocity, notes=notes,
                           chance=chance_beat_align(m_beats, len(velocity)))
