"""MFCC audio features as ``python_speech_features.mfcc`` (v0.6) computes them, in numpy.

SyncNet's audio input (joonson/syncnet_python ``SyncNetInstance.evaluate``) is
``python_speech_features.mfcc(audio, 16000)`` of the 16 kHz mono int16 track with every default:
25 ms frames every 10 ms (100 MFCC frames per second, i.e. 4 per video frame at 25 fps), pre-emphasis
0.97, no window (rectangular), 512-point FFT power spectrum ``|X|^2 / 512``, 26 triangular mel filters
on FFT bins ``floor(513 f / sr)``, log, orthonormal DCT-II keeping 13 coefficients, sinusoidal lifter 22,
and coefficient 0 replaced by the log of the frame energy. The audio stays in int16 units (the official
code reads it with ``scipy.io.wavfile``), which only shifts coefficient 0.
"""
from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MfccConfig", "mfcc", "mel_filterbank"]


@dataclass(frozen=True)
class MfccConfig:
    """python_speech_features 0.6 ``mfcc`` defaults (those SyncNet's evaluation uses)."""

    sample_rate: int = 16000
    winlen: float = 0.025  # s
    winstep: float = 0.01  # s -> 100 frames / s
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq: float = 0.0
    highfreq: float | None = None  # None: sample_rate / 2
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True


def _round_half_up(x: float) -> int:
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(config: MfccConfig = MfccConfig()) -> np.ndarray:
    """Triangular filters ``[nfilt, nfft // 2 + 1]`` on FFT bins (python_speech_features ``get_filterbanks``)."""
    highfreq = config.highfreq or config.sample_rate / 2
    if highfreq > config.sample_rate / 2:
        raise ValueError("highfreq is greater than sample_rate / 2")
    mel = np.linspace(_hz_to_mel(config.lowfreq), _hz_to_mel(highfreq), config.nfilt + 2)
    bins = np.floor((config.nfft + 1) * _mel_to_hz(mel) / config.sample_rate)
    fb = np.zeros((config.nfilt, config.nfft // 2 + 1))
    for j in range(config.nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        i = np.arange(int(lo), int(mid))
        fb[j, i] = (i - lo) / (mid - lo)
        i = np.arange(int(mid), int(hi))
        fb[j, i] = (hi - i) / (hi - mid)
    return fb


def _frames(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Overlapping frames ``[N, frame_len]``, zero-padding the end (python_speech_features ``framesig``)."""
    n = len(signal)
    count = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / frame_step)
    padded = np.concatenate([signal, np.zeros((count - 1) * frame_step + frame_len - n)])
    idx = np.arange(frame_len)[None, :] + frame_step * np.arange(count)[:, None]
    return padded[idx]


def mfcc(audio: np.ndarray, config: MfccConfig = MfccConfig()) -> np.ndarray:
    """MFCC ``float64 [N, numcep]`` (one row per 10 ms) of a mono signal in the units it is given in.

    For SyncNet pass the int16 samples (or float samples times 32768).
    """
    from scipy.fft import dct

    x = np.asarray(audio, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mfcc needs a non-empty mono signal [N], got shape {x.shape}")
    x = np.append(x[0], x[1:] - config.preemph * x[:-1])
    frames = _frames(x, _round_half_up(config.winlen * config.sample_rate),
                     _round_half_up(config.winstep * config.sample_rate))
    power = np.square(np.abs(np.fft.rfft(frames, config.nfft))) / config.nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ mel_filterbank(config).T
    feat = np.where(feat == 0, eps, feat)
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, : config.numcep]
    if config.ceplifter > 0:
        n = np.arange(feat.shape[1])
        feat = feat * (1 + (config.ceplifter / 2.0) * np.sin(np.pi * n / config.ceplifter))
    if config.append_energy:
        feat[:, 0] = np.log(energy)
    return feat
