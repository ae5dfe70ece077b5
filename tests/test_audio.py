"""Audio features and blink signal: parity with the official get_data, resampling, decoding, bad input."""
from __future__ import annotations

import math
import random
import subprocess

import numpy as np
import pytest
import soundfile as sf

from sadtalker_lib import audio as A
from sadtalker_lib.blink import blink_ratio, random_blink_sequence

SR = A.AudioConfig().sample_rate


def _tone(sr: int, seconds: float, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spec)])


# ---------------------------------------------------------------------------------------------
# Parity with fixtures/audio.npz (official load_wav / melspectrogram / get_data)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parity
def test_audio_parity_with_official_get_data(fixture, tmp_path):
    fx = fixture("audio")
    path = tmp_path / "speech.wav"
    sf.write(path, fx["wav_int16"], int(fx["sample_rate"]), subtype="PCM_16")

    wav = A.load_audio(path)
    assert wav.dtype == np.float32
    d_wav = np.abs(wav - fx["wav_float32_loaded"]).max()

    feats = A.prepare_audio(path)
    assert feats.num_frames == int(fx["num_frames"]) == 75
    assert feats.mel.shape == (80, 241) and feats.windows.shape == (75, 1, 80, 16)
    d_mel64 = np.abs(feats.mel - fx["mel_80xF_float64"]).max()
    d_mel32 = np.abs(feats.mel.astype(np.float32) - fx["mel_80xF"]).max()
    batch = feats.batch()
    assert tuple(batch.shape) == (1, 75, 1, 80, 16)
    d_win = np.abs(batch.numpy() - fx["indiv_mels"]).max()
    print(f"max abs diff: wav {d_wav:.3g}, mel64 {d_mel64:.3g}, mel32 {d_mel32:.3g}, indiv_mels {d_win:.3g}")
    assert d_wav == 0.0
    assert d_mel64 <= 1e-10
    assert d_mel32 <= 1e-6
    assert d_win <= 1e-6


@pytest.mark.parity
def test_random_blinks_match_official_seed(fixture):
    fx = fixture("audio")
    n = int(fx["num_frames"])
    # the official code draws from the global `random` module after random.seed(1234)
    state = random.getstate()
    try:
        random.seed(int(fx["blink_python_random_seed"]))
        ratio = blink_ratio("random", n)
    finally:
        random.setstate(state)
    assert ratio.shape == (1, n, 1) and ratio.dtype == np.float32
    assert np.array_equal(ratio, fx["ratio_gt"])
    # a private random.Random gives the same draws without touching the global state
    own = blink_ratio("random", n, rng=random.Random(int(fx["blink_python_random_seed"])))
    assert np.array_equal(own, fx["ratio_gt"])


def test_mel_window_indices_follow_official_truncation():
    # int() truncates toward zero: frames 0 and 1 start at -6 and -3 (clamped to mel frame 0 later)
    assert [A.window_start(i) for i in range(5)] == [-6, -3, 0, 3, 6]
    mel = np.arange(80 * 20, dtype=np.float64).reshape(80, 20)
    w = A.mel_windows(mel, 3)
    assert w.shape == (3, 1, 80, 16) and w.dtype == np.float32
    assert list(w[0, 0, 0]) == [0] * 7 + list(range(1, 10))  # -6..9 clamped at 0
    assert list(w[2, 0, 0]) == list(range(0, 16))
    far = A.mel_windows(mel, 8)[7, 0, 0]  # start 16: 16..31 clamped to the last mel frame (19)
    assert list(far) == [16, 17, 18, 19] + [19] * 12


def test_mel_filter_bank_is_slaney():
    fb = A.mel_filter_bank()
    assert fb.shape == (80, 401) and fb.dtype == np.float32 and (fb >= 0).all()
    freqs = np.fft.rfftfreq(800, 1 / SR)
    assert freqs[fb.sum(0) > 0].min() > 55.0 and freqs[fb.sum(0) > 0].max() < 7600.0
    # slaney normalisation: peak height 2 / (bandwidth in Hz), so every triangle has unit area in Hz
    # (sampled on the 20 Hz FFT grid) and the wide high bands are much lower than the narrow low ones
    area = fb.sum(axis=1) * (SR / 800)
    assert np.abs(area - 1).max() < 0.05
    assert fb[0].max() > fb[-1].max() * 5


def test_crop_to_frames_and_frame_count():
    wav = np.ones(640 * 3 + 100, dtype=np.float32)
    out, frames = A.crop_to_frames(wav)
    assert frames == 3 and len(out) == 1920
    assert A.melspectrogram(out).shape == (80, 1 + 1920 // 200)


# ---------------------------------------------------------------------------------------------
# Resampling, channels, decoding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_resampled_wav_is_16k_mono_of_the_right_length(tmp_path, sr):
    tone = _tone(sr, 1.3)
    path = tmp_path / f"tone_{sr}.wav"
    sf.write(path, tone, sr, subtype="PCM_16")
    wav = A.load_audio(path)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert len(wav) == math.ceil(len(tone) * SR / sr)
    assert abs(_peak_hz(wav, SR) - 440.0) < 2.0
    # away from the edges the resampled tone equals the 16 kHz tone
    ref = _tone(SR, 1.3)[: len(wav)]
    assert np.abs(wav[800:-800] - ref[800:-800]).max() < 5e-3


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(48000, 0.5, 300.0), _tone(48000, 0.5, 500.0, amp=0.1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    wav = A.load_audio(path)
    assert wav.ndim == 1 and len(wav) == 8000
    expected = A.resample((left + right) / 2, 48000, SR)
    assert np.abs(wav - expected).max() < 1e-6


def test_array_input(tmp_path):
    tone16 = (_tone(SR, 0.5) * 32767).astype(np.int16)
    wav = A.load_audio(tone16, sample_rate=SR)
    assert np.array_equal(wav, tone16.astype(np.float32) / 32768)
    stereo_first = np.stack([_tone(8000, 0.5), _tone(8000, 0.5)])  # [C, N]
    assert len(A.load_audio(stereo_first, sample_rate=8000)) == 8000
    feats = A.prepare_audio(_tone(48000, 1.0), sample_rate=48000)
    assert feats.num_frames == 25 and feats.windows.shape == (25, 1, 80, 16)
    with pytest.raises(A.AudioError, match="sample_rate"):
        A.load_audio(_tone(SR, 0.5))


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize("suffix,codec", [(".mp3", "libmp3lame"), (".m4a", "aac")])
def test_compressed_audio_is_decoded_with_ffmpeg(tmp_path, suffix, codec):
    src = tmp_path / "tone.wav"
    sf.write(src, np.stack([_tone(44100, 1.0)] * 2, axis=1), 44100, subtype="PCM_16")
    out = tmp_path / f"tone{suffix}"
    _ffmpeg("-i", str(src), "-c:a", codec, "-b:a", "128k", str(out))
    wav = A.load_audio(out)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - SR) < 0.06 * SR  # codec priming / padding only
    assert abs(_peak_hz(wav, SR) - 440.0) < 2.0
    assert 0.2 < np.abs(wav).max() < 0.4


# ---------------------------------------------------------------------------------------------
# Bad input: each case raises AudioError naming the file and what to do
# ---------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(A.AudioError, match="not found.*nope.wav"):
        A.load_audio(tmp_path / "nope.wav")
    with pytest.raises(A.AudioError, match="not a file"):
        A.load_audio(tmp_path)


def test_empty_file(tmp_path):
    for name in ("empty.wav", "empty.mp3"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(A.AudioError, match=f"empty.*{name}"):
            A.load_audio(tmp_path / name)
    with pytest.raises(A.AudioError, match="empty"):
        A.load_audio(np.zeros(0, dtype=np.float32), sample_rate=SR)


@pytest.mark.parametrize("name", ["notes.wav", "notes.mp3", "notes.txt"])
def test_unreadable_file(tmp_path, name):
    (tmp_path / name).write_text("this is not audio\n" * 50)
    with pytest.raises(A.AudioError, match=f"cannot read audio from .*{name}.*wav"):
        A.load_audio(tmp_path / name)


def test_silent_audio(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, dtype=np.int16), SR, subtype="PCM_16")
    with pytest.raises(A.AudioError, match="silence.wav is silent"):
        A.load_audio(path)
    with pytest.raises(A.AudioError, match="silent"):
        A.load_audio(np.full(SR, 1e-6, dtype=np.float32), sample_rate=SR)


def test_too_short_audio(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, _tone(SR, 0.03), SR)  # 480 samples < 640 = one video frame
    with pytest.raises(A.AudioError, match="blip.wav is too short.*one video frame"):
        A.load_audio(path)
    assert A.prepare_audio(_tone(SR, 0.04), sample_rate=SR).num_frames == 1  # exactly one frame is fine


def test_non_finite_and_wrong_type():
    bad = _tone(SR, 0.5)
    bad[10] = np.nan
    with pytest.raises(A.AudioError, match="NaN"):
        A.load_audio(bad, sample_rate=SR)
    with pytest.raises(A.AudioError, match="path or a numpy array"):
        A.load_audio(12345)


# ---------------------------------------------------------------------------------------------
# Blink signal
# ---------------------------------------------------------------------------------------------
def test_blink_signals():
    assert not random_blink_sequence(20, random.Random(0)).any()  # <= 20 frames: no blinks (official)
    assert not random_blink_sequence(21, random.Random(0)).any()  # official crashes here; we give none
    seq = random_blink_sequence(500, random.Random(3))
    assert seq.shape == (500, 1) and set(np.unique(seq)) <= {0.0, 0.5, 0.9, 1.0} and seq.max() == 1.0
    assert not blink_ratio("none", 30).any() and not blink_ratio(None, 30).any()
    user = np.linspace(0, 1, 30)
    assert np.allclose(blink_ratio(user, 30)[0, :, 0], user)
    with pytest.raises(ValueError, match="30 video frames"):
        blink_ratio(np.zeros(29), 30)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blink_ratio(np.full(30, 2.0), 30)
    with pytest.raises(ValueError, match="unknown blink mode"):
        blink_ratio("sometimes", 30)


def test_mel_in_blocks_equals_mel_in_one_go(monkeypatch):
    """Long audio is analysed STFT_BLOCK_FRAMES frames at a time; the blocks must join without a seam."""
    import sadtalker_lib.audio as A

    wav = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    whole = A.melspectrogram(wav)
    monkeypatch.setattr(A, "STFT_BLOCK_FRAMES", 37)
    blocks = A.melspectrogram(wav)
    assert blocks.shape == whole.shape == (80, 1 + len(wav) // 200)
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-12)
