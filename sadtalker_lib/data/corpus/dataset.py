"""``CorpusDataset``: windows of L consecutive frames of a corpus folder (5 for ExpNet, 32 for PoseVAE)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .format import load_clip, load_index, select_clips

__all__ = ["CorpusDataset"]


class CorpusDataset(Dataset):
    """Windows of ``window`` consecutive frames from a corpus folder (either builder's output).

    Each item is a dict of tensors:
        mel [L, 1, 80, 16], coeffs [L, 70], exp_lip [L, 64], blink [L, 1], landmarks [L, 68, 2],
        ref_coeffs [70] (the clip's first frame: beta_0 / rho_0 of the paper), style_id, identity_id, clip, start
        (long scalars), and frames [L, 3, S, S] float in [0, 1] when ``with_frames``.
    window: 5 for ExpNet, 32 for PoseVAE. stride: step between window starts. clips: ids or positions to use
    (e.g. a train / held-out split); default all. Clips shorter than the window are left out (warning).
    Clip arrays are loaded once and kept in memory.
    """

    def __init__(self, root: str | os.PathLike, window: int = 5, stride: int = 1, clips: Sequence | None = None,
                 with_frames: bool = False):
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        self.root = Path(root)
        self.index = load_index(self.root)
        all_clips = self.index["clips"]
        chosen = select_clips(all_clips, clips)
        short = [c["id"] for c in chosen if c["n_frames"] < window]
        if short:
            warnings.warn(f"clips shorter than the {window}-frame window are left out: {short}", stacklevel=2)
        self.clips = [c for c in chosen if c["n_frames"] >= window]
        if not self.clips:
            raise ValueError(f"no clip in {self.root} has at least {window} frames")
        self.window, self.stride, self.with_frames = int(window), int(stride), bool(with_frames)
        self.items = [(k, s) for k, c in enumerate(self.clips) for s in range(0, c["n_frames"] - window + 1, stride)]
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def clip_arrays(self, k: int) -> dict[str, np.ndarray]:
        """All arrays of the k-th clip of this dataset (cached)."""
        if k not in self._cache:
            self._cache[k] = load_clip(self.root, self.clips[k])
        return self._cache[k]

    def __getitem__(self, i: int) -> dict:
        k, s = self.items[i]
        a = self.clip_arrays(k)
        w = slice(s, s + self.window)
        c = self.clips[k]
        item = {
            "mel": torch.from_numpy(a["mel"][w]),
            "coeffs": torch.from_numpy(a["coeffs"][w]),
            "exp_lip": torch.from_numpy(a["exp_lip"][w]),
            "blink": torch.from_numpy(a["blink"][w][:, None]),
            "landmarks": torch.from_numpy(a["landmarks"][w]),
            "ref_coeffs": torch.from_numpy(a["coeffs"][0]),
            "style_id": torch.tensor(int(c["style_id"])),
            "identity_id": torch.tensor(int(c["identity_id"])),
            "clip": torch.tensor(k),
            "start": torch.tensor(s),
        }
        if self.with_frames:
            item["frames"] = torch.from_numpy(a["frames"][w]).permute(0, 3, 1, 2).float() / 255.0
        return item
