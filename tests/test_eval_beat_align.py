"""Beat Align Score (eval.beat_align): Bailando's formula on constructed beats, motion / audio beat detection."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from sadtalker_lib.metrics.beat_align import (BA_SIGMA_FRAMES, audio_beats, beat_align, beat_align_score,
                                               chance_beat_align, motion_beats, motion_velocity, onset_envelope,
                                               peak_pick)


def test_score_on_constructed_beats_hand_computed():
    audio, motion = [10, 30, 50, 70], [12, 30, 41, 90]
    # nearest motion beat: 10->12 (2), 30->30 (0), 50->41 (9), 70->90 (20); sigma = 3 frames: 2 sigma^2 = 18
    expected = (math.exp(-4 / 18) + 1.0 + math.exp(-81 / 18) + math.exp(-400 / 18)) / 4
    assert BA_SIGMA_FRAMES == 3.0
    assert beat_align_score(audio, motion) == pytest.approx(expected, abs=1e-15)
    assert beat_align_score([5, 17], [5, 17]) == 1.0
    assert beat_align_score([5], []) == 0.0  # no motion beat: every term vanishes
    with pytest.raises(ValueError, match="at least one audio beat"):
        beat_align_score([], [3])


def test_motion_beats_are_velocity_minima():
    t = np.arange(120)
    yaw = np.sin(2 * np.pi * (t - 0.3) / 40.0)  # turning points (zero speed) at t = 10.3 + 20 k
    feats = np.stack([yaw, np.zeros_like(yaw), np.zeros_like(yaw)], axis=1)
    beats, v = motion_beats(feats)
    assert v.shape == (119,)
    # velocity index i is the step i -> i+1, so the step over the turning point 10.3 + 20 k is i = 10 + 20 k
    assert beats.tolist() == [10, 30, 50, 70, 90, 110]
    # frames without a face are interpolated, not dropped
    holes = feats.copy()
    holes[[33, 34, 71]] = np.nan
    assert np.isfinite(motion_velocity(holes)).all()
    with pytest.raises(ValueError, match="at least 2 frames"):
        motion_velocity(np.full((5, 3), np.nan))


def test_audio_beats_find_clicks_at_their_frames():
    sr, fps = 16000, 25
    audio = np.zeros(sr * 4, np.float32)
    clicks = [12, 30, 55, 80]  # video frames, more than `wait` = 10 frames apart
    rng = np.random.default_rng(0)
    for f in clicks:
        start = f * sr // fps
        audio[start: start + 400] = rng.standard_normal(400) * np.hanning(400)
    env = onset_envelope(audio, sr, fps)
    assert env.shape == (1 + len(audio) * 4 // 5 // 512,)  # one value per video frame (12.8 kHz, hop 512)
    beats = audio_beats(audio, sr, fps)
    # librosa's onset envelope (centred frames, lag 1, n_fft / (2 hop) compensation) peaks one frame after the
    # frame where a click starts; Bailando uses it as is
    assert np.array_equal(beats, np.array(clicks) + 1), beats


def test_peak_pick_rules():
    x = np.zeros(40)
    x[[5, 9, 25]] = [3.0, 4.0, 2.0]
    # 9 is within `wait` of 5, so only the earlier one is kept (greedy); 25 is a peak above the local mean + delta
    assert peak_pick(x, 3, 3, 3, 5, 0.5, 10).tolist() == [5, 25]


def test_beat_align_of_a_clip_and_bad_input():
    sr, fps, n = 16000, 25, 100
    audio = np.zeros(n * sr // fps, np.float32)
    for f in (20, 50, 80):
        audio[f * 640: f * 640 + 300] = 0.5
    yaw = np.sin(2 * np.pi * np.arange(n) / 30.0)
    r = beat_align(audio, sr, yaw[:, None], fps)
    assert 0.0 <= r.score <= 1.0 and len(r.audio_beats) == 3 and r.velocity.shape == (n - 1,)
    assert r.chance == chance_beat_align(r.motion_beats, n - 1)
    assert r.above_chance == pytest.approx(r.score - r.chance)
    assert r.beats_per_s(fps) == pytest.approx(len(r.motion_beats) / (n / fps))
    with pytest.raises(ValueError, match="no audio beat"):
        beat_align(np.zeros_like(audio), sr, yaw[:, None], fps)


LIBROSA_ONSET = Path(__file__).with_name("librosa_onset_strength.json")  # librosa's output for beat_test_signal()


def beat_test_signal() -> np.ndarray:
    """2 s of noise bursts at 12.8 kHz (the rate Bailando's onset envelope uses)."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(2)
    return resample_poly(rng.standard_normal(32000) * np.repeat(rng.random(50) > 0.5, 640), 4, 5)


def test_onset_envelope_matches_librosa():
    """Bailando computes the audio beats with librosa; ours is the same onset envelope in numpy. The reference is
    librosa's output stored beside this file: importing librosa JIT-compiles numba code, ~27 s of a fresh CI
    machine; the next test regenerates it with librosa (SADTALKER_LAB_SLOW=1)."""
    ref = np.asarray(json.loads(LIBROSA_ONSET.read_text())["onset_strength"])
    ours = onset_envelope(beat_test_signal(), 12800, 25)
    assert ours.shape == ref.shape
    assert np.abs(ref - ours).max() < 1e-5 * max(1.0, ref.max())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SADTALKER_LAB_SLOW") != "1", reason="imports librosa: set SADTALKER_LAB_SLOW=1")
def test_stored_librosa_reference_is_librosas():
    import librosa

    ref = librosa.onset.onset_strength(y=beat_test_signal(), sr=12800, aggregate=np.median)
    stored = np.asarray(json.loads(LIBROSA_ONSET.read_text())["onset_strength"])
    assert np.abs(ref - stored).max() < 1e-9 * max(1.0, ref.max())


def test_chance_level_rises_with_beat_density_and_timing_beats_it():
    """Beat Align is a recall over audio beats: motion beats score more the more of them there are, whatever their
    timing; the chance level follows that, and beats on the audio beats are above it."""
    audio = np.arange(10, 250, 25)  # 10 audio beats in 250 frames
    trains = [np.arange(3, 250, step) for step in (50, 25, 10, 5)]  # 5, 10, 25, 50 evenly spaced motion beats
    levels = [chance_beat_align(m, 250) for m in trains]
    assert all(a < b for a, b in zip(levels, levels[1:]))
    assert chance_beat_align([], 250) == 0.0
    # the chance level is the score averaged over every circular shift of the motion beats (brute force here)
    m = np.array([4, 17, 60, 61, 140, 230])
    shifted = [beat_align_score(audio, (m + s) % 250) for s in range(250)]
    circular = [np.mean([np.exp(-min(min(abs(b - x), 250 - abs(b - x)) for x in (m + s) % 250) ** 2 / 18)
                         for b in audio]) for s in range(250)]
    assert chance_beat_align(m, 250) == pytest.approx(np.mean(circular), rel=1e-9)
    assert chance_beat_align(m, 250) == pytest.approx(np.mean(shifted), abs=0.01)  # the ends barely matter
    on_time = beat_align_score(audio, audio + 1)  # 10 motion beats, one frame late
    assert on_time > 0.9 and on_time - chance_beat_align(audio + 1, 250) > 0.5
    off = audio + 12  # half-way between audio beats: below the chance level of the same train
    assert beat_align_score(audio, off) < chance_beat_align(off, 250)
    clustered = np.arange(100, 110)  # 10 beats in one burst cover fewer frames than 10 spread ones
    assert chance_beat_align(clustered, 250) < chance_beat_align(audio + 1, 250)
    with pytest.raises(ValueError, match="motion beats must lie"):
        chance_beat_align([250], 250)
