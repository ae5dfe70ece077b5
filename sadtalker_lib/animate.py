"""The render loop (SadTalker Fig. 2, right): source image + coefficient windows -> video frames.

    1. canonical keypoints of the source            kp_c = KPDetector(source)              once
    2. source motion from the source semantics       kp_s = transform(kp_c, MappingNet(src)) once
    3. source appearance volume                      f_s  = generator.encode_source(source) once
    4. for every frame t: kp_d = transform(kp_c, MappingNet(target[:, t]))  (optional angle overrides)
                          frame_t = generator.render(f_s, kp_s, kp_d)

This is the official ``make_animation`` (``src/facerender/modules/make_animation.py``) with the source-only
work (steps 1-3) hoisted out of the frame loop; the official loop re-encodes the source image in every
generator call. Per frame the mapping net and the generator see a batch of B, as officially, so the numbers
match the official ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .motion import keypoint_transformation

__all__ = ["Animation", "SourceEncoding", "encode_source", "render_step", "make_animation"]


@dataclass
class Animation:
    """Output of :func:`make_animation`.

    frames [B, T, 3, H, W] in (0, 1); kp_canonical / kp_source [B, K, 3]; kp_driving [B, T, K, 3].
    """

    frames: torch.Tensor
    kp_canonical: torch.Tensor
    kp_source: torch.Tensor
    kp_driving: torch.Tensor


def _angle_sequence(name: str, seq, b: int, t: int, like: torch.Tensor):
    if seq is None:
        return None
    seq = torch.as_tensor(seq, dtype=like.dtype, device=like.device)
    if seq.ndim == 1:
        seq = seq.expand(b, -1)
    if tuple(seq.shape) != (b, t):
        raise ValueError(f"{name} must be degrees [B={b}, T={t}] (or [T]), got {tuple(seq.shape)}")
    return seq


@dataclass
class SourceEncoding:
    """Everything that depends only on the source image: computed once per video by :func:`encode_source`.

    kp_canonical / kp_source [B, K, 3]; feature_3d: the generator's appearance volume [B, C, D, H/4, W/4].
    """

    kp_canonical: torch.Tensor
    kp_source: torch.Tensor
    feature_3d: torch.Tensor

    def expand(self, b: int) -> "SourceEncoding":
        """The same source for a batch of ``b`` driving frames (views, no copies) when encoded with B = 1."""
        if self.kp_canonical.shape[0] == b:
            return self
        if self.kp_canonical.shape[0] != 1:
            raise ValueError(f"cannot expand a source encoded with batch {self.kp_canonical.shape[0]} to {b}")
        return SourceEncoding(*(x.expand(b, *x.shape[1:]) for x in (self.kp_canonical, self.kp_source, self.feature_3d)))


def _check_eval(**modules) -> None:
    for name, module in modules.items():
        if getattr(module, "training", False):
            raise ValueError(f"{name} is in training mode (batch-norm would use batch statistics): call .eval() first")


@torch.no_grad()
def encode_source(source_image: torch.Tensor, source_semantics: torch.Tensor, *, kp_detector: nn.Module,
                  generator: nn.Module, mapping: Callable[[torch.Tensor], Mapping[str, torch.Tensor]]) -> SourceEncoding:
    """Steps 1-3 above: source image [B, 3, H, W] in [0, 1] and its semantics window [B, C, 27]."""
    _check_eval(kp_detector=kp_detector, generator=generator, mapping=mapping)
    kp_canonical = kp_detector(source_image)  # [B, K, 3]
    kp_source = keypoint_transformation(kp_canonical, mapping(source_semantics))  # [B, K, 3]
    return SourceEncoding(kp_canonical, kp_source, generator.encode_source(source_image))


@torch.no_grad()
def render_step(source: SourceEncoding, target_window: torch.Tensor, *, generator: nn.Module,
                mapping: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], yaw=None, pitch=None, roll=None,
                use_exp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4 for one driving window per batch row: target_window [B, C, 27] -> (frames [B, 3, H, W], kp_d [B, K, 3]).

    yaw / pitch / roll: optional degrees [B] replacing the driving angles (``--input_yaw`` etc.).
    """
    src = source.expand(target_window.shape[0])
    he = mapping(target_window)
    kp_d = keypoint_transformation(src.kp_canonical, he, wo_exp=not use_exp, yaw=yaw, pitch=pitch, roll=roll)
    return generator.render(src.feature_3d, kp_source=src.kp_source, kp_driving=kp_d)["prediction"], kp_d


def make_animation(source_image: torch.Tensor, source_semantics: torch.Tensor, target_semantics: torch.Tensor, *,
                   kp_detector: nn.Module, generator: nn.Module,
                   mapping: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
                   yaw=None, pitch=None, roll=None, use_exp: bool = True, progress: bool = False) -> Animation:
    """Render T frames per batch row.

    source_image: [B, 3, H, W] in [0, 1]. source_semantics: [B, C, 27] (one window of C = 70 or 73
    coefficients). target_semantics: [B, T, C, 27]. mapping: any module returning a dict with ``yaw``,
    ``pitch``, ``roll`` (bin logits [B, 66]), ``t`` [B, 3], ``exp`` [B, 3K] (the MappingNet).
    yaw / pitch / roll: optional degree sequences [B, T] (or [T]) that replace the driving angles, as
    ``--input_yaw/pitch/roll`` do (``yaw_c_seq`` etc. in the official code); the source keeps its own pose.
    use_exp=False drops the expression deltas of the driving keypoints (the official make_animation has a
    ``use_exp`` argument too but ignores it, so the official output always corresponds to True).
    Runs under ``torch.no_grad``; the modules must be in eval mode (ValueError otherwise).
    """
    if source_image.ndim != 4:
        raise ValueError(f"source_image must be [B, 3, H, W], got {tuple(source_image.shape)}")
    b = source_image.shape[0]
    if source_semantics.ndim != 3 or source_semantics.shape[0] != b:
        raise ValueError(f"source_semantics must be [B={b}, C, 27], got {tuple(source_semantics.shape)}")
    c, w = source_semantics.shape[1:]
    if target_semantics.ndim != 4 or target_semantics.shape[0] != b or target_semantics.shape[2:] != (c, w):
        raise ValueError(f"target_semantics must be [B={b}, T, {c}, {w}], "
                         f"got {tuple(target_semantics.shape)}")
    _check_eval(kp_detector=kp_detector, generator=generator, mapping=mapping)
    t_len = target_semantics.shape[1]
    angles = {n: _angle_sequence(n, s, b, t_len, source_image)
              for n, s in (("yaw", yaw), ("pitch", pitch), ("roll", roll))}

    src = encode_source(source_image, source_semantics, kp_detector=kp_detector, generator=generator, mapping=mapping)
    frames, kp_driving = [], []
    for i in tqdm(range(t_len), desc="face render", disable=not progress):
        override = {n: (None if a is None else a[:, i]) for n, a in angles.items()}
        frame, kp_d = render_step(src, target_semantics[:, i], generator=generator, mapping=mapping,
                                  use_exp=use_exp, **override)
        frames.append(frame)
        kp_driving.append(kp_d)
    return Animation(frames=torch.stack(frames, dim=1), kp_canonical=src.kp_canonical, kp_source=src.kp_source,
                     kp_driving=torch.stack(kp_driving, dim=1))
