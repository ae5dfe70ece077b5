"""Reading videos for evaluation: frames at a fixed rate and size, plus the audio track.

The paper evaluates 256x256 frames (Sec. 4.1: "resized to 256x256 for evaluation"); SyncNet's protocol
needs 25 fps video and 16 kHz mono audio (joonson/syncnet_python ``run_pipeline.py`` re-encodes with
``-r 25`` and ``-ar 16000 -ac 1``). :func:`load_clip` decodes a file that way with the ffmpeg binary of
``imageio-ffmpeg`` (via ``sadtalker_lib.video``): variable-frame-rate files are resampled to ``fps``,
non-square frames are centre-cropped to a square before resizing (so faces are not squashed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..video import VideoError, decode_audio, probe_video, read_video

__all__ = ["Clip", "NoAudioTrackError", "VideoError", "load_clip", "as_clip", "check_same_timing", "EVAL_FPS",
           "EVAL_SIZE", "AUDIO_RATE"]

EVAL_FPS = 25.0  # SyncNet's protocol: run_pipeline.py --frame_rate 25
EVAL_SIZE = 256  # paper Sec. 4.1: frames resized to 256x256 for evaluation
AUDIO_RATE = 16000  # SyncNet's protocol: -ar 16000 -ac 1


class NoAudioTrackError(VideoError):
    """The video has no audio track, so audio-dependent metrics (LSE, Beat Align) cannot be computed."""


@dataclass
class Clip:
    """Decoded video: ``frames`` uint8 ``[T, H, W, 3]`` RGB at ``fps``; ``audio`` float32 ``[N]`` mono at
    ``sample_rate`` (None when the file has no audio track)."""

    frames: np.ndarray
    fps: float = EVAL_FPS
    audio: np.ndarray | None = None
    sample_rate: int = AUDIO_RATE
    name: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        f = np.asarray(self.frames)
        if f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] == 0:
            raise ValueError(f"{self.name or 'clip'}: frames must be [T, H, W, 3] with T > 0, got shape {f.shape}")
        if f.dtype != np.uint8:
            f = (np.clip(f.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        self.frames = f
        if self.audio is not None:
            a = np.asarray(self.audio, np.float32)
            if a.ndim != 1:
                raise ValueError(f"{self.name or 'clip'}: audio must be mono [N], got shape {a.shape}")
            self.audio = a

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def require_audio(self) -> np.ndarray:
        """The audio, or :class:`NoAudioTrackError` with the clip's name."""
        if self.audio is None:
            raise NoAudioTrackError(f"{self.name or 'clip'} has no audio track; LSE and Beat Align need one.")
        return self.audio


def load_clip(path: str | os.PathLike, *, fps: float | None = EVAL_FPS, size: int | None = EVAL_SIZE,
              max_frames: int | None = None, require_audio: bool = False,
              sample_rate: int = AUDIO_RATE) -> Clip:
    """Decode ``path`` to a :class:`Clip`: frames at ``fps`` (None: native), ``size`` x ``size`` (None: native),
    at most ``max_frames``; audio 16 kHz mono, cut to the decoded frames' duration.

    A file without an audio track gives ``audio=None`` (and a note), or :class:`NoAudioTrackError` when
    ``require_audio``.
    """
    path = Path(path)
    info = probe_video(path)  # VideoError for a missing / unreadable file
    frames = read_video(path, fps, max_frames, None if size is None else (size, size), crop_square=True,
                        scale_flags="area")
    clip_fps = float(fps) if fps is not None else float(info["fps"])
    notes = []
    if info["width"] != info["height"] and size is not None:
        notes.append(f"{path.name}: {info['width']}x{info['height']} centre-cropped to a square before resizing")
    audio = None
    if info["has_audio"]:
        audio = decode_audio(path, sample_rate)
        audio = audio[: int(round(len(frames) / clip_fps * sample_rate))]
    elif require_audio:
        raise NoAudioTrackError(f"{path} has no audio track; LSE and Beat Align need one.")
    else:
        notes.append(f"{path.name}: no audio track")
    return Clip(frames=frames, fps=clip_fps, audio=audio, sample_rate=sample_rate, name=path.name, notes=notes)


def as_clip(item, **kwargs) -> Clip:
    """A :class:`Clip` from a Clip (returned as is), a video path (:func:`load_clip` with ``kwargs``)."""
    if isinstance(item, Clip):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_clip(item, **kwargs)
    raise TypeError(f"expected a video path or an metrics.Clip, got {type(item).__name__}")


def check_same_timing(a: Clip, b: Clip, *, tolerance_frames: int = 1) -> None:
    """Raise ``ValueError`` if two clips that are compared frame by frame differ in fps or length."""
    if abs(a.fps - b.fps) > 1e-6:
        raise ValueError(f"{a.name or 'clip a'} is {a.fps:g} fps but {b.name or 'clip b'} is {b.fps:g} fps; "
                         "decode both at the same rate (load_clip(..., fps=25))")
    if abs(a.num_frames - b.num_frames) > tolerance_frames:
        raise ValueError(f"{a.name or 'clip a'} has {a.num_frames} frames but {b.name or 'clip b'} has "
                         f"{b.num_frames}; the videos have different lengths")

