"""The official BATCH layout of the render, reproduced for tests and benchmarks (not used by the library).

The official ``get_facerender_data`` (src/generate_facerender_batch.py) spreads ONE clip over the renderer's
batch: the T windows are padded to a multiple of B by repeating the LAST WINDOW, then row b holds frames
b*S .. b*S+S-1; ``make_animation`` (src/facerender/modules/make_animation.py) then loops over the S steps and
calls ``generator(source_image, kp_source, kp_driving)``, which re-encodes the source image in every call.
The fixtures are stored in that layout, and issue 15's speed comparison needs the official call. The library's
one render path (``sadtalker_lib.steps.render.render_stream``) streams B consecutive frames instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from sadtalker_lib.steps.keypoints import keypoint_transformation
from sadtalker_lib.steps.windows import SEMANTIC_RADIUS, driving_windows, frame_windows

__all__ = ["to_batch_rows", "from_batch_rows", "FaceRenderSemantics", "get_facerender_semantics", "Animation",
           "make_animation"]


def to_batch_rows(x, batch_size: int) -> torch.Tensor:
    """[T, ...] -> [B, ceil(T / B), ...]: pad by repeating the last item, then row b = items b*S .. b*S+S-1."""
    t = torch.as_tensor(x)
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


@dataclass
class FaceRenderSemantics:
    """source_semantics [B, C, 27]; target_semantics [B, S, C, 27]; yaw / pitch / roll_c_seq [B, S] or None."""

    source_semantics: torch.Tensor
    target_semantics: torch.Tensor
    frame_num: int
    yaw_c_seq: torch.Tensor | None = None
    pitch_c_seq: torch.Tensor | None = None
    roll_c_seq: torch.Tensor | None = None

    def frames(self, batched: torch.Tensor) -> torch.Tensor:
        """Renderer output [B, S, ...] -> [T, ...] in time order."""
        return from_batch_rows(batched, self.frame_num)


def get_facerender_semantics(generated, source, *, batch_size: int = 2, preprocess: str = "crop",
                             still: bool = False, expression_scale: float = 1.0,
                             input_yaw: Sequence[float] | None = None, input_pitch: Sequence[float] | None = None,
                             input_roll: Sequence[float] | None = None,
                             radius: int = SEMANTIC_RADIUS) -> FaceRenderSemantics:
    """The official ``get_facerender_data`` minus the image, built from the library's streaming windows."""
    w = driving_windows(generated, source, preprocess=preprocess, still=still, expression_scale=expression_scale,
                        input_yaw=input_yaw, input_pitch=input_pitch, input_roll=input_roll, radius=radius)

    def seq(a):
        return None if a is None else to_batch_rows(a, batch_size)

    return FaceRenderSemantics(
        source_semantics=w.source[None].expand(batch_size, -1, -1).contiguous(),
        target_semantics=to_batch_rows(frame_windows(w.target, radius), batch_size).to(torch.float32),
        frame_num=len(w), yaw_c_seq=seq(w.yaw), pitch_c_seq=seq(w.pitch), roll_c_seq=seq(w.roll))


@dataclass
class Animation:
    """frames [B, S, 3, H, W] in (0, 1); kp_canonical / kp_source [B, K, 3]; kp_driving [B, S, K, 3]."""

    frames: torch.Tensor
    kp_canonical: torch.Tensor
    kp_source: torch.Tensor
    kp_driving: torch.Tensor


@torch.no_grad()
def make_animation(source_image: torch.Tensor, source_semantics: torch.Tensor, target_semantics: torch.Tensor, *,
                   kp_detector: nn.Module, generator: nn.Module,
                   mapping: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
                   yaw=None, pitch=None, roll=None, progress: bool = False) -> Animation:
    """The official make_animation: source_image [B, 3, H, W], source_semantics [B, C, 27], target_semantics
    [B, S, C, 27], optional degrees [B, S]. The source is re-encoded in every generator call, as officially."""
    kp_canonical = kp_detector(source_image)
    kp_source = keypoint_transformation(kp_canonical, mapping(source_semantics))
    frames, kp_driving = [], []
    for i in tqdm(range(target_semantics.shape[1]), desc="official make_animation", disable=not progress):
        over = {n: (None if a is None else a[:, i]) for n, a in (("yaw", yaw), ("pitch", pitch), ("roll", roll))}
        kp_d = keypoint_transformation(kp_canonical, mapping(target_semantics[:, i]), **over)
        frames.append(generator(source_image, kp_source=kp_source, kp_driving=kp_d)["prediction"])
        kp_driving.append(kp_d)
    return Animation(torch.stack(frames, 1), kp_canonical, kp_source, torch.stack(kp_driving, 1))
