"""Coefficient windows for the MappingNet: the official ``get_facerender_data`` glue (paper Sec. 3.3), streamed.

The renderer is driven by *windows* of 3DMM motion coefficients: for frame t the MappingNet sees the
coefficients of frames t-13 .. t+13 (27 frames, clamped at the clip's ends), laid out channels-first
[C, 27]. The source image is described by its own coefficients repeated 27 times.

    generated [T, 70] (exp 64 | angle 3 | trans 3), source [73] (+ crop params s, tx, ty)
      1. target_coefficients   expression_scale on the generated exp; full mode appends the source crop
                               params (C = 73); still mode copies the source pose (and crop params)
      2. frame_windows         [T, C, 27], edge-clamped
      3. DrivingWindows.batches  the windows of ``batch_size`` CONSECUTIVE frames at a time (with the
                               ``--input_yaw/pitch/roll`` degrees of those frames), cut only when asked, so
                               memory does not grow with the clip's length
    plus source_window [C, 27] and camera_degrees for ``--input_yaw/pitch/roll``.

:func:`driving_windows` runs 1 and prepares 3. Official: ``src/generate_facerender_batch.py``
(``get_facerender_data``, ``transform_semantic_1``, ``transform_semantic_target``, ``gen_camera_pose``). The
official code instead pads the clip to a multiple of the batch size and spreads the time axis over the batch
rows (row b = frames b*S .. b*S+S-1); frames do not interact, so the per-frame windows and outputs are the
same (tests/official_batch.py rebuilds that layout to compare with the fixtures). The paper (supp. B) speaks
of a 5-frame window; the released models use 27.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..coeffs import CROP, CROP_DIM, EXP, EXP_DIM, FULL_DIM, MOTION_DIM, POSE

__all__ = [
    "SEMANTIC_RADIUS",
    "MOTION_DIM",
    "CROP_DIM",
    "FULL_DIM",
    "EXP_COLUMNS",
    "POSE_COLUMNS",
    "CROP_COLUMNS",
    "is_full_preprocess",
    "source_window",
    "frame_windows",
    "target_coefficients",
    "camera_degrees",
    "WindowBatch",
    "DrivingWindows",
    "driving_windows",
]

# get_facerender_data: ``semantic_radius = 13`` -> windows of 2 * 13 + 1 = 27 frames.
SEMANTIC_RADIUS = 13

# Column layout of the coefficients the renderer sees (src/utils/preprocess.py CropAndExtract.generate):
# exp 64 | angle 3 | trans 3 (= 70, what SadTalker animates) | crop params s, tx, ty (= 73, full mode only).
# (the layout itself lives in coeffs.py)
EXP_COLUMNS, POSE_COLUMNS, CROP_COLUMNS = EXP, POSE, CROP


def is_full_preprocess(preprocess: str) -> bool:
    """Whether ``--preprocess`` selects the 73-channel route (official test: ``'full' in preprocess.lower()``)."""
    return "full" in preprocess.lower()


def _as_float_tensor(x) -> torch.Tensor:
    """Array-like -> floating tensor (float64 stays float64, like the official numpy arithmetic on .mat data)."""
    t = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    return t


def _first_row(source, name: str = "source") -> torch.Tensor:
    """[C] or [N, C] (a source .mat's coeff_3dmm: use its first frame) -> [C]."""
    s = _as_float_tensor(source)
    if s.ndim == 2:
        if s.shape[0] < 1:
            raise ValueError(f"{name} coefficients are empty: {tuple(s.shape)}")
        s = s[0]
    if s.ndim != 1:
        raise ValueError(f"{name} coefficients must be [C] or [N, C], got {tuple(s.shape)}")
    return s


def source_window(source: torch.Tensor, radius: int = SEMANTIC_RADIUS) -> torch.Tensor:
    """Source coefficients [C] (or [N, C]: first row) -> the constant window [C, 2 * radius + 1]."""
    s = _first_row(source)
    return s[:, None].expand(-1, 2 * radius + 1).contiguous()


def frame_windows(coeffs: torch.Tensor, radius: int = SEMANTIC_RADIUS, start: int = 0,
                  stop: int | None = None) -> torch.Tensor:
    """Per-frame windows: coeffs [T, C] -> [T, C, 2 * radius + 1]; window t holds frames t-r .. t+r, clamped.

    start / stop: only the windows of frames start .. stop-1 ([stop - start, C, W]; the renderer asks for one
    batch at a time, so memory does not grow with the clip's length)."""
    c = _as_float_tensor(coeffs)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"coefficients must be [T >= 1, C], got {tuple(c.shape)}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    t = c.shape[0]
    stop = t if stop is None else min(stop, t)
    idx = torch.arange(start, stop)[:, None] + torch.arange(-radius, radius + 1)[None, :]  # [T, W]
    idx = idx.clamp(0, t - 1)
    return c[idx].permute(0, 2, 1).contiguous()  # [T, W, C] -> [T, C, W]


def target_coefficients(generated, source, *, full: bool = False, still: bool = False,
                        expression_scale: float = 1.0) -> torch.Tensor:
    """The per-frame coefficients the renderer follows: [T, 70] (or [T, 73] when ``full``).

    generated: [T, >= 70] audio-driven coefficients (exp | angle | trans; extra columns are ignored).
    source: [C >= 70] (or [N, C]: first row) source coefficients; ``full`` needs its 73 (crop params).
    expression_scale multiplies the generated exp columns only (never the source). ``full`` appends the
    source crop params to every frame; ``still`` replaces every column from 64 on (pose, and in full mode the
    crop params, which are the source's anyway) by the source's.
    """
    g = _as_float_tensor(generated).clone()
    if g.ndim != 2 or g.shape[1] < MOTION_DIM:
        raise ValueError(f"generated coefficients must be [T, {MOTION_DIM}] (exp 64 | angle 3 | trans 3), "
                         f"got {tuple(g.shape)}")
    g = g[:, :MOTION_DIM]
    s = _first_row(source)
    width = FULL_DIM if full else MOTION_DIM
    if s.shape[0] < width:
        raise ValueError(f"source coefficients have {s.shape[0]} columns; "
                         + ("full preprocess needs 73 (70 + crop params s, tx, ty)" if full else "need at least 70"))
    s = s[:width]
    g[:, EXP_COLUMNS] = g[:, EXP_COLUMNS] * expression_scale
    if full:
        g = torch.cat([g, s[CROP_COLUMNS].expand(g.shape[0], -1)], dim=1)
    if still:
        g[:, EXP_DIM:] = s[EXP_DIM:]
    return g


def camera_degrees(values: Sequence[float], frame_num: int) -> torch.Tensor:
    """``--input_yaw`` style list of key angles -> per-frame degrees [frame_num] (official interpolation).

    # OFFICIAL QUIRK: src/generate_facerender_batch.py gen_camera_pose. One value is held for every frame.
    Several values are joined by straight segments at ONE common speed, (sum of |jumps|) / (frame_num - 1)
    degrees per frame; each segment is ``np.arange(start, stop, +-speed)``, so it stops one step short of its
    end value. The concatenation is then cut to frame_num, or padded with its last value. Consequences kept for
    parity: the last listed angle is never reached (``[0, 20, -10]`` over 75 frames ends at -9.73), and the
    frame count of a segment is ceil(|jump| / speed), with float rounding included.

    Where the official code divides by zero (frame_num == 1 with several values, all values equal, or two
    equal neighbours) it crashes; here a one-frame clip gets the first value, an all-equal list is held,
    and an equal-neighbour segment adds no frames (its arange is empty).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("the camera angle list is empty; give at least one degree value")
    if frame_num < 1:
        raise ValueError(f"frame_num must be >= 1, got {frame_num}")
    total = 0.0
    for a, b in zip(values, values[1:]):
        total += abs(b - a)
    if len(values) == 1 or frame_num == 1 or total == 0:
        seq = np.full(frame_num, values[0], dtype=np.float64)
    else:
        per_frame = total / (frame_num - 1)
        parts: list[float] = []
        for a, b in zip(values, values[1:]):
            if b == a:
                continue
            step = per_frame * abs(b - a) / (b - a)  # the official expression (not copysign): same float rounding
            parts.extend(np.arange(a, b, step).tolist())
        parts = parts[:frame_num] + [parts[-1]] * max(0, frame_num - len(parts))
        seq = np.asarray(parts, dtype=np.float64)
    return torch.from_numpy(seq).to(torch.float32)  # torch.FloatTensor in get_facerender_data


@dataclass
class WindowBatch:
    """The MappingNet input of ``batch_size`` consecutive frames: frames ``start .. start + B - 1``.

    windows [B, C, 27]; yaw / pitch / roll: degree overrides [B] or None.
    """

    start: int
    windows: torch.Tensor
    yaw: torch.Tensor | None = None
    pitch: torch.Tensor | None = None
    roll: torch.Tensor | None = None

    @property
    def angles(self) -> dict[str, torch.Tensor | None]:
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}


@dataclass
class DrivingWindows:
    """What the render loop consumes for one clip (official ``get_facerender_data`` minus the image and the
    batch layout). source [C, 27]; target [T, C] (windows are cut from it per batch); yaw / pitch / roll:
    per-frame degree overrides [T] or None. C = 70, or 73 in full mode. All float32.
    """

    source: torch.Tensor
    target: torch.Tensor
    yaw: torch.Tensor | None = None
    pitch: torch.Tensor | None = None
    roll: torch.Tensor | None = None
    radius: int = SEMANTIC_RADIUS

    def __len__(self) -> int:
        return self.target.shape[0]

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[WindowBatch]:
        """Frames start .. stop-1 in order, ``batch_size`` consecutive frames at a time (the last batch may be
        shorter: nothing is padded)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        stop = len(self) if stop is None else min(stop, len(self))
        if not 0 <= start < stop:
            raise ValueError(f"need 0 <= start < stop <= {len(self)}, got start {start}, stop {stop}")
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            win = frame_windows(self.target, self.radius, start=i, stop=j).to(torch.float32)  # [B, C, 27]
            over = {n: (None if a is None else a[i:j]) for n, a in
                    (("yaw", self.yaw), ("pitch", self.pitch), ("roll", self.roll))}
            yield WindowBatch(i, win, **over)


def driving_windows(generated, source, *, preprocess: str = "crop", still: bool = False,
                    expression_scale: float = 1.0, input_yaw: Sequence[float] | None = None,
                    input_pitch: Sequence[float] | None = None, input_roll: Sequence[float] | None = None,
                    radius: int = SEMANTIC_RADIUS) -> DrivingWindows:
    """Generated coefficients [T, 70] + source coefficients [73] (or the .mat's [N, 73]) -> :class:`DrivingWindows`.

    preprocess: the ``--preprocess`` mode; ``full`` / ``extfull`` give 73 channels (``mapping_full``),
    others 70 (``mapping_crop``). See the module docstring for the steps.
    """
    full = is_full_preprocess(preprocess)
    src = _first_row(source)
    width = FULL_DIM if full else MOTION_DIM
    if src.shape[0] < width:
        raise ValueError(f"source coefficients have {src.shape[0]} columns, preprocess '{preprocess}' needs {width}")
    target = target_coefficients(generated, src, full=full, still=still, expression_scale=expression_scale)
    t = target.shape[0]

    def seq(values):
        return None if values is None else camera_degrees(values, t)

    return DrivingWindows(source=source_window(src[:width], radius).to(torch.float32), target=target,
                          yaw=seq(input_yaw), pitch=seq(input_pitch), roll=seq(input_roll), radius=radius)
