"""Diversity of head motion: standard deviation of per-frame head-motion features over a generated video.

Paper Sec. 4.1: "a standard deviation of the head motion feature embeddings extracted from the generated
frames using Hopenet". No evaluation code was released, so the reduction is this project's reading:
per feature dimension, the standard deviation over the frames with a face (``np.std``, ddof 0), then the
mean over dimensions. Features come from ``metrics.head_pose`` (Hopenet embeddings when its weights are
present; offline, solvePnP head angles in radians, labelled ``Diversity [solvePnP]``). Values from
different feature kinds are not comparable with each other or with the paper's column.
"""
from __future__ import annotations

import numpy as np

from .head_pose import HeadMotion

__all__ = ["diversity", "diversity_of"]


def diversity(features: np.ndarray) -> float:
    """Mean over dimensions of the std over time of ``features`` ``[T, D]``; NaN rows (no face) are skipped."""
    f = np.asarray(features, np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2:
        raise ValueError(f"features must be [T, D], got shape {f.shape}")
    f = f[np.isfinite(f).all(axis=1)]
    if len(f) < 2:
        raise ValueError(f"Diversity needs at least 2 frames with a face, got {len(f)}")
    return float(np.std(f, axis=0).mean())


def diversity_of(motion: HeadMotion) -> float:
    """:func:`diversity` of a :class:`HeadMotion`."""
    return diversity(motion.features)
