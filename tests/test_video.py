"""mp4 writing with muxed audio, atomic output, decoding back."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sadtalker_lib.video import (VideoError, VideoWriter, decode_audio, probe_video, read_video, read_video_audio,
                                 write_video)


def _frames(n, h=64, w=48):
    t = np.linspace(0, 1, n)[:, None, None, None]
    return (np.broadcast_to(t, (n, h, w, 3)) * 255).astype(np.uint8)


def test_write_with_audio_has_right_duration_and_frames(tmp_path):
    sr = 16000
    audio = (0.1 * np.sin(2 * np.pi * 220 * np.arange(sr * 2) / sr)).astype(np.float32)
    out = write_video(tmp_path / "a.mp4", _frames(50), fps=25, audio=(audio, sr))
    info = probe_video(out)
    assert info["has_audio"] and info["fps"] == 25 and (info["width"], info["height"]) == (48, 64)
    assert abs(info["duration_s"] - 2.0) < 0.1
    frames = read_video(out, fps=None)
    assert frames.shape == (50, 64, 48, 3)
    assert frames[0].mean() < 20 and frames[-1].mean() > 235  # the ramp survived encoding
    back = read_video_audio(out)
    assert abs(len(back) / sr - 2.0) < 0.1 and np.abs(back).max() > 0.05
    assert [p for p in os.listdir(tmp_path) if p.startswith(".sadtalker-")] == []


def test_failure_leaves_no_file(tmp_path):
    target = tmp_path / "b.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target) as w:
            w.write(_frames(1)[0])
            raise RuntimeError("boom")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_unwritable_output_and_bad_frames(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
        target = tmp_path / "file" / "x.mp4"
        (tmp_path / "file").write_text("a file, not a folder")
    else:
        target = ro / "x.mp4"
    with pytest.raises(VideoError, match="writable|cannot create"):
        VideoWriter(target)
    w = VideoWriter(tmp_path / "c.mp4")
    with pytest.raises(VideoError, match=r"\[H, W, 3\]"):
        w.write(np.zeros((4, 4)))
    w.abort()


def test_video_without_audio_is_reported(tmp_path):
    out = write_video(tmp_path / "silent.mp4", _frames(5))
    assert not probe_video(out)["has_audio"]
    with pytest.raises(VideoError, match="no audio track"):
        read_video_audio(out)


def test_crop_square_and_resize_while_decoding(tmp_path):
    frames = np.zeros((3, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 255  # a white centre square 40 x 40 between black side bands
    out = write_video(tmp_path / "wide.mp4", frames, fps=25)
    square = read_video(out, fps=None, size=(20, 20), crop_square=True, scale_flags="area")
    assert square.shape == (3, 20, 20, 3) and square[:, 2:-2, 2:-2].min() > 200  # only the centre is left
    squashed = read_video(out, fps=None, size=(20, 20))
    assert squashed.shape == (3, 20, 20, 3) and squashed[:, :, :3].max() < 60  # the black bands are still there


def test_decode_audio_of_any_file(tmp_path):
    import soundfile as sf

    sr = 8000
    tone = (0.25 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)).astype(np.float32)
    sf.write(tmp_path / "tone.wav", tone, sr, subtype="PCM_16")
    wav = decode_audio(tmp_path / "tone.wav", 16000)  # resampled by ffmpeg
    assert wav.dtype == np.float32 and abs(len(wav) - 16000) < 50 and 0.2 < np.abs(wav).max() < 0.3
    (tmp_path / "bad.mp3").write_text("not audio")
    with pytest.raises(VideoError, match="bad.mp3"):
        decode_audio(tmp_path / "bad.mp3")
