"""Speech in, mel windows out: load / resample / mel spectrogram / per-video-frame windows.

The data flow (paper Sec. 3.2, "the audio feature of each frame is a 0.2 s mel-spectrogram"; Sec. 4 "the
same setting as Wav2Lip")::

    load_audio(path or array) ──► 16 kHz mono float32 wav
    crop_to_frames(wav)       ──► int(frames * 640) samples, frames = int(len / 640)   (25 fps)
    melspectrogram(wav)       ──► [80, F] in [-4, 4],  F = 1 + len // 200
    mel_windows(mel, frames)  ──► [T, 1, 80, 16]  (16 mel frames = 0.2 s per video frame)

``prepare_audio`` runs the four steps and returns an :class:`AudioFeatures`; ``batch_mel_windows`` adds
the batch axis the networks take ([1, T, 1, 80, 16]).

Parity: the official code (OpenTalker/SadTalker ``src/utils/audio.py``, ``src/utils/hparams.py``,
``src/generate_batch.py``) uses librosa 0.9.2. Everything librosa did is written out here with numpy and
scipy (the slaney mel filter bank, the centred STFT with zero padding), so librosa is not needed; the
float64 mel matches the official one to ~1e-12 on the fixture. Wav / flac / ogg at 16 kHz mono read exactly
as the official ``load_wav`` reads them (libsndfile float32 scaling, i.e. int16 / 32768). Other sample
rates are resampled with ``scipy.signal.resample_poly`` (the official librosa call used resampy's
kaiser_best, so resampled input is close to, not bit-equal with, the official run). mp3 / m4a / anything
else is decoded by ``video.decode_audio`` (the ffmpeg binary of ``imageio-ffmpeg``) straight to 16 kHz mono s16.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import scipy.signal

__all__ = [
    "AudioConfig",
    "AudioError",
    "AudioFeatures",
    "load_audio",
    "resample",
    "crop_to_frames",
    "num_video_frames",
    "melspectrogram",
    "mel_filter_bank",
    "mel_windows",
    "window_start",
    "batch_mel_windows",
    "prepare_audio",
]

PathLike = Union[str, os.PathLike]


class AudioError(ValueError):
    """The audio input is missing, empty, unreadable, silent or too short; the message says what to do."""


@dataclass(frozen=True)
class AudioConfig:
    """Audio constants of the official release (one place each).

    Sources: ``src/utils/hparams.py`` (mel settings), ``src/generate_batch.py`` (fps, window of 16,
    offset of 2 frames), ``src/utils/audio.py`` (normalisation).
    """

    sample_rate: int = 16000  # hparams.sample_rate; get_data calls load_wav(path, 16000)
    fps: int = 25  # get_data: fps = 25 (hard-coded)
    preemphasis: float = 0.97  # hparams.preemphasis (preemphasize=True)
    n_fft: int = 800  # hparams.n_fft
    hop_size: int = 200  # hparams.hop_size (12.5 ms) -> 80 mel frames per second
    win_size: int = 800  # hparams.win_size
    num_mels: int = 80  # hparams.num_mels
    fmin: float = 55.0  # hparams.fmin
    fmax: float = 7600.0  # hparams.fmax
    ref_level_db: float = 20.0  # hparams.ref_level_db
    min_level_db: float = -100.0  # hparams.min_level_db
    max_abs_value: float = 4.0  # hparams.max_abs_value; symmetric_mels=True, allow_clipping=True
    mel_window: int = 16  # get_data: syncnet_mel_step_size (16 mel frames = 0.2 s)
    window_offset_frames: int = 2  # get_data: start_frame_num = i - 2 (window starts 2 video frames early)
    # Not official: input whose peak |x| is below this counts as silent (about -80 dBFS, i.e. int16 |x| < 4).
    silence_peak: float = 1e-4

    @property
    def samples_per_frame(self) -> float:
        """Audio samples per video frame (640.0 at 16 kHz / 25 fps; official ``bit_per_frames``)."""
        return self.sample_rate / self.fps

    @property
    def mel_frames_per_second(self) -> float:
        """Mel frames per second (80.0; the official window formula hard-codes 80)."""
        return self.sample_rate / self.hop_size


DEFAULT_CONFIG = AudioConfig()

# Files libsndfile (python-soundfile) reads directly; anything else goes through ffmpeg.
_SOUNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au"}


# ---------------------------------------------------------------------------------------------
# Loading and resampling
# ---------------------------------------------------------------------------------------------
def _to_float32(x: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1) with the libsndfile scaling (int16 / 32768); floats kept."""
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype == np.uint8:  # 8-bit wav is unsigned
        return ((x.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if x.dtype.kind == "i":
        return (x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))).astype(np.float32)
    raise AudioError(f"audio array has dtype {x.dtype}; pass float or integer PCM samples")


def _to_mono(x: np.ndarray, what: str) -> np.ndarray:
    """[N] or [N, C] (channels last, as soundfile returns) -> [N] by averaging channels, like librosa."""
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        if x.shape[1] > x.shape[0]:  # [C, N] given: channels first
            x = x.T
        return x.mean(axis=1, dtype=np.float64).astype(np.float32) if x.shape[1] > 1 else x[:, 0]
    raise AudioError(f"{what}: expected a 1-D [samples] or 2-D [samples, channels] array, got shape {x.shape}")


def resample(wav: np.ndarray, sr_in: int, sr_out: int = DEFAULT_CONFIG.sample_rate) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``): [N] -> [ceil(N * sr_out / sr_in)] float32."""
    if sr_in <= 0 or sr_out <= 0:
        raise AudioError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    return scipy.signal.resample_poly(wav.astype(np.float64), up, down).astype(np.float32)


def _ffmpeg_decode(path: Path, sample_rate: int) -> np.ndarray:
    """Decode any ffmpeg-readable file to mono s16 at ``sample_rate`` (``video.decode_audio``) -> float32 [N]."""
    from .video import FFmpegError, VideoError, decode_audio

    what_to_do = ("Is it an audio file (wav, mp3, m4a, flac, ogg) or a video with a sound track? Convert it to a "
                  "16 kHz wav and try again.")
    try:
        wav = decode_audio(path, sample_rate)
    except FFmpegError as e:
        raise AudioError(f"cannot read audio from {path}: ffmpeg says '{e.detail}'. {what_to_do}") from e
    except VideoError as e:  # no ffmpeg binary
        raise AudioError(f"cannot decode {path} ({path.suffix or 'these'} files are read by ffmpeg): {e}, "
                         "or convert the file to wav.") from e
    if wav.size == 0:
        raise AudioError(f"cannot read audio from {path}: ffmpeg says 'no audio samples decoded'. {what_to_do}")
    return wav


def _read_file(path: Path, config: AudioConfig) -> np.ndarray:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}. Check the path (relative paths start at {Path.cwd()}).")
    if not path.is_file():
        raise AudioError(f"audio path is not a file: {path}. Pass a wav/mp3/m4a/flac file.")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}. Record or export it again.")
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        import soundfile as sf

        try:
            # Same call as librosa 0.9.2 load: float32 frames (int16 / 32768), channels last.
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception:  # noqa: BLE001 - libsndfile refused it; ffmpeg may still read (e.g. mp3 in a .wav)
            return _ffmpeg_decode(path, config.sample_rate)
        return resample(_to_mono(data, str(path)), sr, config.sample_rate)
    return _ffmpeg_decode(path, config.sample_rate)


def load_audio(source: PathLike | np.ndarray, sample_rate: int | None = None, *,
               config: AudioConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Load speech as 16 kHz mono float32 [N] (the official ``load_wav(path, 16000)``).

    ``source`` is a file path (wav / flac / ogg read by soundfile; mp3 / m4a / video / anything else decoded
    by ffmpeg) or a numpy array [N] or [N, C] / [C, N] with its ``sample_rate`` (integer PCM is scaled as
    libsndfile does, float is kept). Raises :class:`AudioError` for a missing, empty, unreadable, silent or
    shorter-than-one-video-frame input.
    """
    if isinstance(source, np.ndarray):
        what = "audio array"
        if sample_rate is None:
            raise AudioError("an audio array needs its sample_rate: load_audio(array, sample_rate=...)")
        if source.size == 0:
            raise AudioError("audio array is empty; pass at least one video frame of samples (40 ms)")
        wav = resample(_to_mono(_to_float32(np.asarray(source)), what), int(sample_rate), config.sample_rate)
    elif isinstance(source, (str, os.PathLike)):
        what = str(source)
        wav = _read_file(Path(source), config)
    else:
        raise AudioError(f"audio source must be a path or a numpy array, got {type(source).__name__}")
    if wav.size == 0:
        raise AudioError(f"{what} holds no audio samples; record or export it again.")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{what} contains NaN or infinite samples; fix the waveform first.")
    peak = float(np.max(np.abs(wav)))
    if peak < config.silence_peak:
        raise AudioError(
            f"{what} is silent (peak |x| = {peak:.2e} < {config.silence_peak:g}): the models need speech. "
            "Check that the right file / microphone was used and that it is not muted."
        )
    if num_video_frames(len(wav), config) < 1:
        raise AudioError(
            f"{what} is too short: {len(wav)} samples at {config.sample_rate} Hz is less than one video frame "
            f"({config.samples_per_frame:g} samples = {1000 / config.fps:g} ms). Use a longer clip."
        )
    return wav


# ---------------------------------------------------------------------------------------------
# Crop / pad to whole video frames (official parse_audio_length + crop_pad_audio)
# ---------------------------------------------------------------------------------------------
def num_video_frames(num_samples: int, config: AudioConfig = DEFAULT_CONFIG) -> int:
    """Video frames covered by ``num_samples``: ``int(num_samples / 640)`` (truncating, as the official)."""
    return int(num_samples / config.samples_per_frame)


def crop_to_frames(wav: np.ndarray, config: AudioConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, int]:
    """Crop (or zero-pad) [N] to ``int(frames * 640)`` samples; returns (wav, frames)."""
    frames = num_video_frames(len(wav), config)
    length = int(frames * config.samples_per_frame)
    if len(wav) > length:
        wav = wav[:length]
    elif len(wav) < length:
        wav = np.pad(wav, (0, length - len(wav)))
    return wav, frames


# ---------------------------------------------------------------------------------------------
# Mel spectrogram (official src/utils/audio.py melspectrogram, librosa 0.9.2 semantics)
# ---------------------------------------------------------------------------------------------
def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (librosa htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filter_bank(config: AudioConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Slaney-normalised triangular mel filters [num_mels, 1 + n_fft // 2], float32.

    Same as ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` in librosa 0.9.2 (htk=False,
    norm="slaney", dtype float32): mel-spaced edges, triangles in Hz, each scaled by 2 / (bandwidth in Hz).
    The rows are stored in float32 before and after the area scaling, as librosa does, so the values
    are bit-equal with the official basis.
    """
    n_bins = 1 + config.n_fft // 2
    fft_freqs = np.fft.rfftfreq(n=config.n_fft, d=1.0 / config.sample_rate)
    mel_edges = np.linspace(_hz_to_mel_slaney(config.fmin), _hz_to_mel_slaney(config.fmax), config.num_mels + 2)
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((config.num_mels, n_bins), dtype=np.float32)
    for i in range(config.num_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]  # slaney area normalisation (in place, float32)
    return weights


STFT_BLOCK_FRAMES = 4096  # mel frames computed at a time (~51 s of audio): long audio needs no large buffers


def _stft_frames(y: np.ndarray, config: AudioConfig) -> np.ndarray:
    """Centred analysis frames [F, n_fft] (a strided view, no copy) of the zero-padded signal (librosa 0.9.2,
    center=True, pad_mode="constant")."""
    if config.win_size != config.n_fft:
        raise ValueError("win_size != n_fft is not supported (the official setting has both 800)")
    pad = config.n_fft // 2
    y = np.pad(y, (pad, pad), mode="constant")
    return np.lib.stride_tricks.sliding_window_view(y, config.n_fft)[:: config.hop_size]


def _normalised_db(mel: np.ndarray, config: AudioConfig) -> np.ndarray:
    min_level = np.exp(config.min_level_db / 20 * np.log(10))
    s_db = 20 * np.log10(np.maximum(min_level, mel)) - config.ref_level_db
    m = config.max_abs_value
    return np.clip((2 * m) * ((s_db - config.min_level_db) / (-config.min_level_db)) - m, -m, m)


def melspectrogram(wav: np.ndarray, config: AudioConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Normalised log-mel spectrogram [num_mels, F] (float64), F = 1 + len(wav) // hop_size.

    pre-emphasis (1 - 0.97 z^-1) -> |STFT| -> slaney mel -> 20 log10(max(1e-5, x)) - 20 dB ->
    symmetric normalisation 8 (S + 100) / 100 - 4, clipped to [-4, 4]. Every step after the STFT works on
    each frame alone, so frames are computed ``STFT_BLOCK_FRAMES`` at a time (the same numbers; memory does
    not grow with the length beyond the output itself).
    """
    y = scipy.signal.lfilter([1.0, -config.preemphasis], [1.0], wav)  # float64, as the official
    frames = _stft_frames(y, config)  # [F, n_fft] view
    bank = mel_filter_bank(config)
    window = scipy.signal.get_window("hann", config.win_size, fftbins=True)
    out = np.empty((bank.shape[0], frames.shape[0]), np.float64)
    for k in range(0, frames.shape[0], STFT_BLOCK_FRAMES):
        mag = np.abs(np.fft.rfft(frames[k:k + STFT_BLOCK_FRAMES] * window[None, :], axis=-1)).T  # [bins, B]
        out[:, k:k + STFT_BLOCK_FRAMES] = _normalised_db(np.dot(bank, mag), config)
    return out


# ---------------------------------------------------------------------------------------------
# Per-video-frame windows (official get_data loop)
# ---------------------------------------------------------------------------------------------
def window_start(frame: int, config: AudioConfig = DEFAULT_CONFIG) -> int:
    """First mel frame of video frame ``frame``'s window: ``int(80 * ((frame - 2) / 25))``.

    Python ``int`` truncates toward zero, so frames 0 and 1 start at -6 and -3 (then clamped to 0).
    The float expression is evaluated in the official order so that truncation matches bit for bit.
    """
    return int(config.mel_frames_per_second * ((frame - config.window_offset_frames) / float(config.fps)))


def mel_windows(mel: np.ndarray, num_frames: int, config: AudioConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Cut the mel [num_mels, F] into one 16-frame window per video frame -> [T, 1, num_mels, 16] float32.

    Window i covers mel frames ``window_start(i) .. +15``, each index clamped to [0, F - 1].
    """
    n_mel_frames = mel.shape[1]
    starts = np.array([window_start(i, config) for i in range(num_frames)], dtype=np.int64)
    idx = np.clip(starts[:, None] + np.arange(config.mel_window)[None, :], 0, n_mel_frames - 1)  # [T, 16]
    windows = mel.astype(np.float32)[:, idx]  # [80, T, 16] (cast first: the same values, half the memory)
    return np.ascontiguousarray(windows.transpose(1, 0, 2)[:, None])  # [T, 1, 80, 16]


def batch_mel_windows(windows: np.ndarray):
    """[T, 1, 80, 16] numpy -> torch float32 [1, T, 1, 80, 16] (the official ``indiv_mels`` batch)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(0)


@dataclass
class AudioFeatures:
    """Result of :func:`prepare_audio`.

    wav: [N] float32, N = num_frames * 640; mel: [80, F] float64 (F = 1 + N // 200);
    windows: [T, 1, 80, 16] float32 with T = num_frames.
    """

    wav: np.ndarray
    mel: np.ndarray
    windows: np.ndarray
    num_frames: int
    sample_rate: int
    fps: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def batch(self):
        """torch [1, T, 1, 80, 16] for ExpNet / PoseVAE."""
        return batch_mel_windows(self.windows)


def prepare_audio(source: PathLike | np.ndarray, sample_rate: int | None = None, *,
                  config: AudioConfig = DEFAULT_CONFIG) -> AudioFeatures:
    """load -> crop to whole frames -> mel -> per-frame windows (the audio half of official ``get_data``)."""
    wav = load_audio(source, sample_rate, config=config)
    wav, frames = crop_to_frames(wav, config)
    mel = melspectrogram(wav, config)
    return AudioFeatures(wav=wav, mel=mel, windows=mel_windows(mel, frames, config), num_frames=frames,
                         sample_rate=config.sample_rate, fps=config.fps)
