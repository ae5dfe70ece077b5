"""Video I/O with the ffmpeg binary shipped by ``imageio-ffmpeg`` (no system ffmpeg needed).

* :class:`VideoWriter` streams RGB frames into an H.264 mp4 (25 fps by default) and muxes an audio
  track in at the end. Frames go straight to ffmpeg's stdin, so memory stays flat however long the
  video is. The file is written under a temporary name and renamed only when complete: a failure never
  leaves a half-written video at the requested path.
* :func:`read_video` decodes frames (resampled to a given fps, optionally centre-cropped to a square and
  resized) and :func:`decode_audio` any file's first audio stream (mono s16 at a given rate -> float32);
  :func:`read_video_audio` is the audio track of a video (16 kHz), for reference videos and evaluation.

This is the project's one ffmpeg reader: ``audio.load_audio`` (compressed audio), ``metrics.video_io`` and the
corpus builders decode through it.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "FFmpegError", "VIDEO_SUFFIXES", "ffmpeg_exe", "VideoWriter", "write_video", "read_video",
           "decode_audio", "read_video_audio", "probe_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")  # what a "folder of videos" holds


class VideoError(RuntimeError):
    """A video cannot be read or written."""


class FFmpegError(VideoError):
    """ffmpeg could not decode a file; ``detail`` is its last message line."""

    def __init__(self, what: str, detail: str):
        super().__init__(f"cannot decode {what}: ffmpeg says '{detail}'")
        self.detail = detail


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (:class:`VideoError` with the install hint if absent)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure to find the binary is reported the same way
        raise VideoError(f"the ffmpeg binary of the 'imageio-ffmpeg' package is needed ({e}). "
                         "Install it (pip install imageio-ffmpeg)") from e


def _decode(args: list[str], what: str) -> bytes:
    """Run ``ffmpeg -nostdin -v error <args>`` writing raw data to stdout; :class:`VideoError` on failure."""
    r = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", *args], capture_output=True)
    if r.returncode != 0:
        lines = r.stderr.decode(errors="replace").strip().splitlines()
        raise FFmpegError(what, lines[-1] if lines else f"exit status {r.returncode}")
    return r.stdout


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    for p in [parent, *parent.parents]:
        if p.exists() and not p.is_dir():
            raise VideoError(f"cannot write {path}: {p} is a file, not a folder. Choose a writable --out path.")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VideoError(f"cannot create the output folder {parent}: {e}. Choose a writable --out path.") from e
    if not os.access(parent, os.W_OK):
        raise VideoError(f"the output folder {parent} is not writable. Choose a writable --out path.")
    if path.exists() and path.is_dir():
        raise VideoError(f"the output path {path} is a folder; give a file name ending in .mp4.")


class VideoWriter:
    """Stream frames into ``path`` (mp4, H.264, yuv420p) and mux ``audio`` in on :meth:`close`.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=25, audio=(wav, 16000)) as w:
            for frame in frames:          # uint8 [H, W, 3] RGB or float [H, W, 3] in [0, 1]
                w.write(frame)

    ``audio`` is a path to an audio file or a tuple ``(samples float32 [N], sample_rate)``.
    On an exception inside the block the temporary file is removed and ``path`` is left untouched.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, audio=None, crf: int = 18):
        self.path = Path(path)
        _check_writable(self.path)
        self.fps = float(fps)
        self.audio = audio
        self.crf = int(crf)
        self._tmp_dir = tempfile.mkdtemp(prefix=".sadtalker-", dir=self.path.parent)
        self._video_tmp = Path(self._tmp_dir) / "video.mp4"
        self._proc: subprocess.Popen | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def _start(self, h: int, w: int) -> None:
        self._size = (h, w)
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{self.fps}", "-i", "-",
            # yuv420p needs even sizes: pad by one pixel when odd
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            str(self._video_tmp),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: uint8 [H, W, 3] RGB, or float [H, W, 3] in [0, 1]."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f"frames must be [H, W, 3] RGB, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if self._proc is None:
            self._start(*frame.shape[:2])
        elif frame.shape[:2] != self._size:
            raise VideoError(f"frame size changed from {self._size} to {frame.shape[:2]}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError as e:
            err = self._proc.stderr.read().decode(errors="replace")
            raise VideoError(f"ffmpeg stopped while encoding: {err}") from e
        self.frames_written += 1

    def close(self) -> Path:
        """Finish encoding, mux the audio and move the file to its final name."""
        if self._proc is None:
            raise VideoError("no frames were written; nothing to save")
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace")
        if self._proc.wait() != 0:
            raise VideoError(f"ffmpeg failed to encode the video: {err}")
        final_tmp = Path(self._tmp_dir) / ("final" + self.path.suffix)
        if self.audio is not None:
            audio_path = self.audio
            if isinstance(self.audio, tuple):
                import soundfile as sf

                samples, sr = self.audio
                audio_path = Path(self._tmp_dir) / "audio.wav"
                sf.write(str(audio_path), np.asarray(samples, dtype=np.float32), int(sr), subtype="PCM_16")
            cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(self._video_tmp), "-i", str(audio_path),
                   "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
                   "-shortest", str(final_tmp)]
            r = subprocess.run(cmd, capture_output=True)
            if r.returncode != 0:
                raise VideoError(f"ffmpeg failed to mux the audio: {r.stderr.decode(errors='replace')}")
        else:
            os.replace(self._video_tmp, final_tmp)
        os.replace(final_tmp, self.path)
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete everything written so far (the final path is never touched)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        import shutil

        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path, frames, fps: float = 25.0, audio=None) -> Path:
    """Write an iterable of frames (see :class:`VideoWriter`) to ``path``; returns the path."""
    with VideoWriter(path, fps=fps, audio=audio) as w:
        for f in frames:
            w.write(f)
    return Path(path)


def probe_video(path: str | os.PathLike) -> dict:
    """Basic facts of a video file: width, height, fps, duration_s, has_audio (parsed from ffmpeg -i)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    info = r.stderr.decode(errors="replace")
    m = re.search(r"Video:.*?(\d{2,5})x(\d{2,5})", info)
    if not m:
        raise VideoError(f"{path} has no readable video stream (ffmpeg says: {info.strip().splitlines()[-1]})")
    fps = re.search(r"(\d+(?:\.\d+)?) fps", info)
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", info)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else float("nan")
    return {
        "width": int(m.group(1)), "height": int(m.group(2)),
        "fps": float(fps.group(1)) if fps else float("nan"),
        "duration_s": duration, "has_audio": "Audio:" in info,
    }


def read_video(path: str | os.PathLike, fps: float | None = 25.0, max_frames: int | None = None,
               size: tuple[int, int] | None = None, *, crop_square: bool = False,
               scale_flags: str | None = None) -> np.ndarray:
    """Decode a video into uint8 frames [T, H, W, 3] (RGB), resampled to ``fps`` (None: native rate).

    ``size`` = (width, height) rescales while decoding (``scale_flags``: ffmpeg's scaler, e.g. "area"; None: its
    default, bicubic). ``crop_square`` first centre-crops a non-square frame to a square (with ``size``).
    """
    info = probe_video(path)
    w, h = info["width"], info["height"]
    vf = []
    if fps is not None:
        vf.append(f"fps={fps}")
    if crop_square and size is not None and w != h:
        w = h = min(w, h)
        vf.append(f"crop={w}:{h}")
    if size is not None:
        w, h = size
        vf.append(f"scale={w}:{h}" + (f":flags={scale_flags}" if scale_flags else ""))
    args = ["-i", str(path)]
    if vf:
        args += ["-vf", ",".join(vf)]
    if max_frames is not None:
        args += ["-frames:v", str(int(max_frames))]
    frames = np.frombuffer(_decode(args + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], str(path)), np.uint8)
    n = frames.size // (w * h * 3)
    if n == 0:
        raise VideoError(f"{path} decoded to no frames")
    return frames[: n * w * h * 3].reshape(n, h, w, 3)


def decode_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream of any ffmpeg-readable file as mono float32 [N] at ``sample_rate`` (s16 / 32768).

    :class:`FFmpegError` when ffmpeg cannot decode it; an empty array when it decodes to no samples.
    """
    args = ["-i", str(path), "-vn", "-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
            "-ar", str(int(sample_rate)), "-"]
    data = _decode(args, f"the audio of {path}")
    return np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0


def read_video_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """The audio track of a video as float32 mono at ``sample_rate``; :class:`VideoError` if there is none."""
    info = probe_video(path)
    if not info["has_audio"]:
        raise VideoError(f"{path} has no audio track; lip-sync metrics and audio-driven steps need one.")
    return decode_audio(path, sample_rate)
