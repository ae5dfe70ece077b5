"""Coefficient windows for the MappingNet: the official ``get_facerender_data`` glue (paper Sec. 3.3).

The renderer is driven by *windows* of 3DMM motion coefficients: for frame t the MappingNet sees the
coefficients of frames t-13 .. t+13 (27 frames, clamped at the clip's ends), laid out channels-first
[C, 27]. The source image is described by its own coefficients repeated 27 times.

    generated [T, 70] (exp 64 | angle 3 | trans 3), source [73] (+ crop params s, tx, ty)
      1. target_coefficients   expression_scale on the generated exp; full mode appends the source crop
                               params (C = 73); still mode copies the source pose (and crop params)
      2. frame_windows         [T, C, 27], edge-clamped
      3. to_batch_rows         [B, S, C, 27]: T padded to a multiple of B by repeating the LAST WINDOW, then
                               the time axis is cut into B consecutive pieces (row b = frames b*S .. b*S+S-1)
    plus source_window [C, 27] (repeated over B) and camera_degrees for ``--input_yaw/pitch/roll``.
    from_batch_rows undoes 3 on the renderer's output ([B, S, ...] -> [T, ...]).

:func:`get_facerender_semantics` runs all of it. Official: ``src/generate_facerender_batch.py``
(``get_facerender_data``, ``transform_semantic_1``, ``transform_semantic_target``, ``gen_camera_pose``); the
camera interpolation's odd details are in ``official.official_camera_degrees``. The paper (supp. B) speaks
of a 5-frame window; the released models use 27.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .coeffs import CROP, CROP_DIM, EXP, EXP_DIM, FULL_DIM, MOTION_DIM, POSE
from .official import official_camera_degrees

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
    "to_batch_rows",
    "from_batch_rows",
    "camera_degrees",
    "FaceRenderSemantics",
    "get_facerender_semantics",
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
        raise ValueError(f"generated coefficients must be [T, {MOTION_DIM}] (exp 64 | angle 3 | trans 3), got {tuple(g.shape)}")
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


def to_batch_rows(x, batch_size: int) -> torch.Tensor:
    """[T, ...] -> [B, ceil(T / B), ...]: pad by repeating the last item, then row b = items b*S .. b*S+S-1.

    This is how get_facerender_data spreads ONE clip over the renderer's batch: the rows are consecutive
    pieces of time, not different clips (for windows, the last *window* is repeated, not the last frame).
    """
    t = _as_float_tensor(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if t.ndim < 1 or t.shape[0] < 1:
        raise ValueError(f"need at least one frame, got shape {tuple(t.shape)}")
    pad = (-t.shape[0]) % batch_size
    if pad:
        t = torch.cat([t, t[-1:].expand(pad, *t.shape[1:])], dim=0)
    return t.reshape(batch_size, -1, *t.shape[1:])


def from_batch_rows(x: torch.Tensor, frame_num: int) -> torch.Tensor:
    """Inverse of :func:`to_batch_rows`: [B, S, ...] -> [frame_num, ...] (the padding is dropped)."""
    if x.ndim < 2:
        raise ValueError(f"expected [B, S, ...], got {tuple(x.shape)}")
    if not 1 <= frame_num <= x.shape[0] * x.shape[1]:
        raise ValueError(f"frame_num {frame_num} does not fit {x.shape[0]} x {x.shape[1]} batched items")
    return x.reshape(-1, *x.shape[2:])[:frame_num]


def camera_degrees(values: Sequence[float], frame_num: int) -> torch.Tensor:
    """``--input_yaw`` style list of key angles -> per-frame degrees [frame_num] (official interpolation)."""
    return torch.from_numpy(official_camera_degrees(values, frame_num)).to(torch.float32)


@dataclass
class FaceRenderSemantics:
    """What the renderer loop consumes (official ``get_facerender_data`` minus the image).

    source_semantics [B, C, 27]; target_semantics [B, S, C, 27] (row b = frames b*S ..); frame_num T;
    yaw / pitch / roll_c_seq: degree overrides [B, S] or None. C = 70, or 73 in full mode.
    """

    source_semantics: torch.Tensor
    target_semantics: torch.Tensor
    frame_num: int
    yaw_c_seq: torch.Tensor | None = None
    pitch_c_seq: torch.Tensor | None = None
    roll_c_seq: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.target_semantics.shape[0]

    def frames(self, batched: torch.Tensor) -> torch.Tensor:
        """Renderer output [B, S, ...] -> [T, ...] in time order."""
        return from_batch_rows(batched, self.frame_num)


def get_facerender_semantics(generated, source, *, batch_size: int = 2, preprocess: str = "crop",
                             still: bool = False, expression_scale: float = 1.0,
                             input_yaw: Sequence[float] | None = None, input_pitch: Sequence[float] | None = None,
                             input_roll: Sequence[float] | None = None,
                             radius: int = SEMANTIC_RADIUS) -> FaceRenderSemantics:
    """Generated coefficients [T, 70] + source coefficients [73] (or the .mat's [N, 73]) -> windows.

    preprocess: the ``--preprocess`` mode; ``full`` / ``extfull`` give 73 channels (``mapping_full``),
    others 70 (``mapping_crop``). See the module docstring for the steps.
    """
    full = is_full_preprocess(preprocess)
    src = _first_row(source)
    width = FULL_DIM if full else MOTION_DIM
    if src.shape[0] < width:
        raise ValueError(f"source coefficients have {src.shape[0]} columns, preprocess '{preprocess}' needs {width}")
    target = target_coefficients(generated, src, full=full, still=still, expression_scale=expression_scale)
    frame_num = target.shape[0]
    windows = frame_windows(target, radius)  # [T, C, W]
    source_sem = source_window(src[:width], radius).unsqueeze(0).expand(batch_size, -1, -1).contiguous()

    def seq(values):
        return None if values is None else to_batch_rows(camera_degrees(values, frame_num), batch_size)

    return FaceRenderSemantics(  # torch.FloatTensor in the official code
        source_semantics=source_sem.to(torch.float32),
        target_semantics=to_batch_rows(windows, batch_size).to(torch.float32),
        frame_num=frame_num,
        yaw_c_seq=seq(input_yaw),
        pitch_c_seq=seq(input_pitch),
        roll_c_seq=seq(input_roll),
    )
