"""Training data of FaceRender (paper Sec. 3.3): clips of frames + coefficients, and (source, driving) pairs.

    FaceRenderClips: per clip frames uint8 [T, 3, S, S] (resized to the renderer's size) and coefficients [T, C]
    FramePairs:      a batch of (source, driving) frames of the same clip with their coefficient windows

face-vid2vid (stage 1) learns from the frames of a pair; the MappingNet (stage 2) from the driving frame's
coefficient window (radius 13, ``steps.windows.frame_windows``) and the source's constant window
(``steps.windows.source_window``, as at inference).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..coeffs import MOTION_DIM
from ..steps.windows import SEMANTIC_RADIUS, frame_windows, source_window

__all__ = ["FramePairs", "FaceRenderClips", "split_clips"]


@dataclass
class FramePairs:
    """A batch of (source, driving) pairs from the same clips.

    source / driving [B, 3, S, S] float in [0, 1]; source_coeffs / driving_coeffs [B, C] (exp 64 | angle 3 |
    trans 3); source_window [B, C, W] (the source coefficients repeated, as at inference); driving_window
    [B, C, W] (frames t-r .. t+r, clamped at the clip ends). clip / source_index / driving_index [B] long.
    """

    source: torch.Tensor
    driving: torch.Tensor
    source_coeffs: torch.Tensor
    driving_coeffs: torch.Tensor
    source_window: torch.Tensor
    driving_window: torch.Tensor
    clip: torch.Tensor
    source_index: torch.Tensor
    driving_index: torch.Tensor

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, i) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name)[i] for f in fields(self)})

    def to(self, device) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _resize_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, size, size] (anti-aliased bilinear when the size changes)."""
    x = torch.as_tensor(np.asarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[2:] == (size, size):
        return x.to(torch.uint8)
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


class FaceRenderClips:
    """Clips held in memory for FaceRender training: frames (resized to ``image_size``) and coefficients.

    frames: per clip uint8 [T, H, W, 3] (the corpus format); coeffs: per clip [T, C] (C = 70, or 73 with crop
    params). :meth:`from_corpus` reads a corpus folder (``data.corpus`` format, either builder).
    """

    def __init__(self, frames: Sequence, coeffs: Sequence, image_size: int, ids: Sequence[str] | None = None):
        if len(frames) != len(coeffs) or not len(frames):
            raise ValueError(f"need as many coefficient arrays as frame arrays (>= 1), "
                             f"got {len(frames)} and {len(coeffs)}")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.image_size = int(image_size)
        self.frames = [_resize_frames(f, self.image_size) for f in frames]
        self.coeffs = [torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in coeffs]
        for k, (f, c) in enumerate(zip(self.frames, self.coeffs)):
            if c.ndim != 2 or c.shape[0] != f.shape[0] or c.shape[1] < MOTION_DIM:
                raise ValueError(f"clip {k}: coefficients {tuple(c.shape)} do not fit "
                                 f"{f.shape[0]} frames x >= {MOTION_DIM}")
        self.ids = list(ids) if ids is not None else [f"clip_{k:04d}" for k in range(len(self.frames))]
        self._windows: dict[int, list[torch.Tensor]] = {}

    @classmethod
    def from_corpus(cls, root: str | os.PathLike, clips: Sequence | None = None,
                    image_size: int = 64) -> "FaceRenderClips":
        """Frames + coefficients of a corpus folder (``clips``: ids or positions; default all)."""
        from .corpus.format import load_clip, load_index, select_clips

        entries = select_clips(load_index(root)["clips"], clips)
        frames, coeffs = [], []
        for e in entries:
            a = load_clip(root, e)
            frames.append(a["frames"])
            coeffs.append(a["coeffs"])
        return cls(frames, coeffs, image_size, ids=[e["id"] for e in entries])

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_frames(self) -> int:
        return sum(f.shape[0] for f in self.frames)

    @property
    def coeff_channels(self) -> int:
        return self.coeffs[0].shape[1]

    def windows(self, k: int, radius: int = SEMANTIC_RADIUS) -> torch.Tensor:
        """Coefficient windows of clip k: [T, C, 2 radius + 1] (``steps.windows.frame_windows``, cached)."""
        cache = self._windows.setdefault(radius, [None] * len(self))
        if cache[k] is None:
            cache[k] = frame_windows(self.coeffs[k], radius).to(torch.float32)
        return cache[k]

    def pairs(self, clip: Sequence[int], source: Sequence[int], driving: Sequence[int],
              radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """The pairs (clip[i], frame source[i]) -> (clip[i], frame driving[i])."""
        clip, source, driving = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (clip, source, driving))
        src, drv, sc, dc, sw, dw = [], [], [], [], [], []
        for k, s, d in zip(clip, source, driving):
            f, c = self.frames[k], self.coeffs[k]
            src.append(f[s])
            drv.append(f[d])
            sc.append(c[s])
            dc.append(c[d])
            sw.append(source_window(c[s], radius))
            dw.append(self.windows(int(k), radius)[d])
        as_float = lambda xs: torch.stack(xs).float() / 255.0  # noqa: E731
        return FramePairs(source=as_float(src), driving=as_float(drv), source_coeffs=torch.stack(sc),
                          driving_coeffs=torch.stack(dc), source_window=torch.stack(sw),
                          driving_window=torch.stack(dw), clip=torch.as_tensor(clip),
                          source_index=torch.as_tensor(source), driving_index=torch.as_tensor(driving))

    def sample(self, batch_size: int, rng: np.random.Generator, radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """Random pairs: a clip, then two independent frames of it (face-vid2vid's sampling)."""
        clip = rng.integers(len(self), size=batch_size)
        lengths = np.array([self.frames[k].shape[0] for k in clip])
        source = (rng.random(batch_size) * lengths).astype(np.int64)
        driving = (rng.random(batch_size) * lengths).astype(np.int64)
        return self.pairs(clip, source, driving, radius)

    def fixed_pairs(self, n: int, seed: int = 0, radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """``n`` pairs that depend only on ``seed`` (the held-out set of a run)."""
        return self.sample(n, np.random.default_rng([int(seed), 0xFACE]), radius)


def split_clips(root: str | os.PathLike, n_heldout: int = 1) -> tuple[list[str], list[str]]:
    """Clip ids of a corpus folder split into (train, held-out): the last ``n_heldout`` clips are held out."""
    from .corpus.format import load_index

    ids = [c["id"] for c in load_index(root)["clips"]]
    if not 0 < n_heldout < len(ids):
        raise ValueError(f"n_heldout must be in 1..{len(ids) - 1} for a corpus of {len(ids)} clips, got {n_heldout}")
    return ids[:-n_heldout], ids[-n_heldout:]
