"""PoseVAE's audio features Phi_A(mel) for training: loading the encoder, caching its frozen part, tuning its top.

The official Audio2Pose freezes a *pretrained* Wav2Lip audio encoder. Offline there is none: a frozen encoder with
seeded random weights is a fixed random feature map of the mel windows. Two ways out (``PoseVAETrainConfig``):

* ``audio_encoder``: copy Phi_A from a checkpoint trained here (an ExpNet, whose encoder learned speech -> lips);
* ``audio_train_layers`` = k > 0: train the encoder's last k blocks with the CVAE. The frozen blocks below run
  once per distinct frame (:class:`AudioFrameCache`); each step runs only the top k blocks on the batch's frames.

Either way the features are small: a seeded random encoder gives |Phi_A| ~ 0.02 with a spread over frames of
~0.008 per value, so the 6-per-frame audio input of the CVAE's MLPs (``linear_audio``) starts ~100x weaker than z and
rho_0, and a few hundred Adam steps do not grow it (their frame energy is there: a ridge regression reads it back
with R^2 0.99). ``standardize_audio`` (:class:`AudioStandardizer`) feeds the features with zero mean and unit
spread per value instead, an affine map folded into ``linear_audio`` at export (``posevae_export``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..data.windows import PoseWindows
from ..models.posevae import PoseVAE

__all__ = ["load_audio_encoder", "audio_embeddings", "with_embeddings", "AudioFrameCache", "split_audio_encoder",
           "AudioStandardizer", "AUDIO_STD_FLOOR"]

AUDIO_STD_FLOOR = 0.1  # a value's spread counts as at least this fraction of the median spread (project choice)


def load_audio_encoder(model: PoseVAE, source: str | os.PathLike | Mapping) -> PoseVAE:
    """Copy Phi_A into ``model.audio_encoder`` from an auido2exp / auido2pose checkpoint (file, folder or dict)."""
    from ..official.io import load_state_dict_checked, official_state_dict, read_checkpoint

    ckpt = source if isinstance(source, Mapping) else None
    if ckpt is None and Path(source).is_file():
        ckpt = read_checkpoint(source)
    for network, prefix in (("audio2exp", "audio_encoder."), ("audio2pose", "audio_encoder.audio_encoder.")):
        try:
            sd = official_state_dict(network, ckpt if ckpt is not None else source)
        except Exception:  # noqa: BLE001 - try the next layout
            continue
        enc = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if enc:
            load_state_dict_checked(model.audio_encoder, enc, where=f"{source} [{network} audio encoder]")
            return model
    raise ValueError(f"{source} holds no audio encoder (looked for auido2exp and auido2pose layouts)")


def split_audio_encoder(model: PoseVAE, train_layers: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(frozen bottom, trained top) of ``model.audio_encoder`` (an ``nn.Sequential``): the top holds the last
    ``train_layers`` blocks (shared modules, not copies)."""
    enc = model.audio_encoder
    if not 0 <= train_layers <= len(enc):
        raise ValueError(f"audio_train_layers must be in 0..{len(enc)}, got {train_layers}")
    blocks = list(enc)
    return nn.Sequential(*blocks[:len(blocks) - train_layers]), nn.Sequential(*blocks[len(blocks) - train_layers:])


def _device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights are (the CPU for a module without any, e.g. an empty top)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _frame_ids(windows: PoseWindows) -> torch.Tensor:
    """An id per frame 1..T of every window [N, T]: (clip, frame) when ``start`` is known, else unique."""
    n, t1 = windows.mel.shape[:2]
    if windows.start is not None:
        return windows.clip[:, None] * 1_000_000 + windows.start[:, None] + torch.arange(1, t1)
    return torch.arange(n * (t1 - 1)).reshape(n, t1 - 1)


@dataclass
class AudioFrameCache:
    """The frozen bottom of Phi_A on every distinct frame of some windows: ``features`` [U, C, H, W] and
    ``index`` [N, T] (window n's frame t is ``features[index[n, t]]``)."""

    features: torch.Tensor
    index: torch.Tensor

    @classmethod
    @torch.no_grad()
    def build(cls, bottom: nn.Module, windows: PoseWindows, batch_frames: int = 256) -> "AudioFrameCache":
        if windows.mel is None:
            raise ValueError("the windows carry no mel windows to encode")
        was = bottom.training
        bottom.eval()
        uniq, inverse = torch.unique(_frame_ids(windows).reshape(-1), return_inverse=True)
        first = torch.full((len(uniq),), -1, dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(inverse.numel()), reduce="amin", include_self=False)
        mels = windows.mel[:, 1:].reshape(-1, *windows.mel.shape[2:])[first]  # [U, 1, 80, 16]
        dev = _device(bottom)  # the features stay on the CPU beside the windows
        feats = torch.cat([bottom(mels[i:i + batch_frames].to(dev)).cpu() for i in range(0, len(mels), batch_frames)])
        bottom.train(was)
        return cls(features=feats, index=inverse.reshape(windows.mel.shape[0], -1))

    def embed(self, top: nn.Module, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The top of Phi_A on the frames of windows ``rows`` (None: all): [n, T, 512] (with gradients), on the
        top's device."""
        index = self.index if rows is None else self.index[rows]
        out = top(self.features[index.reshape(-1)].to(_device(top)))  # [n*T, 512, 1, 1]
        return out.reshape(*index.shape, -1)


@torch.no_grad()
def audio_embeddings(model: PoseVAE, windows: PoseWindows, batch_frames: int = 256) -> torch.Tensor:
    """Phi_A (eval mode) on frames 1..T of every window: [N, T, 512]; frames shared by overlapping windows of the
    same clip (known from ``clip`` and ``start``) are encoded once."""
    enc = model.audio_encoder
    was = enc.training
    enc.eval()
    cache = AudioFrameCache.build(enc, windows, batch_frames)
    out = cache.features.reshape(len(cache.features), -1)[cache.index]
    enc.train(was)
    return out


def with_embeddings(model: PoseVAE, windows: PoseWindows | None) -> PoseWindows | None:
    """``windows`` with ``audio_emb`` filled by :func:`audio_embeddings` (and ``mel`` dropped), unless present."""
    if windows is None or windows.audio_emb is not None:
        return windows
    return replace(windows, audio_emb=audio_embeddings(model, windows), mel=None)


@dataclass
class AudioStandardizer:
    """Phi_A features with zero mean and unit spread per value: ``(emb - mean) * gain``; mean, gain [512].

    ``gain`` = 1 / std over the training frames, the std floored at ``AUDIO_STD_FLOOR`` x the median std so that
    values that hardly vary (a random encoder leaves ~20% of them near constant) are not blown up into noise."""

    mean: torch.Tensor
    gain: torch.Tensor

    @classmethod
    @torch.no_grad()
    def fit(cls, emb: torch.Tensor) -> "AudioStandardizer":
        """From features [..., 512] (every window and frame counts once)."""
        flat = emb.reshape(-1, emb.shape[-1]).double()
        std = flat.std(0)
        floor = AUDIO_STD_FLOOR * float(std.median())
        if not floor > 0:
            raise ValueError("the audio features do not vary over the training frames: nothing to standardize")
        return cls(mean=flat.mean(0).float(), gain=(1.0 / std.clamp(min=floor)).float())

    def __call__(self, emb: torch.Tensor) -> torch.Tensor:
        """[..., 512] -> [..., 512]."""
        return (emb - self.mean.to(emb.device)) * self.gain.to(emb.device)

    def invert(self, emb: torch.Tensor) -> torch.Tensor:
        return emb / self.gain.to(emb.device) + self.mean.to(emb.device)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "gain": self.gain.tolist()}

    @classmethod
    def from_json(cls, d: Mapping) -> "AudioStandardizer":
        return cls(mean=torch.tensor(d["mean"], dtype=torch.float32), gain=torch.tensor(d["gain"], dtype=torch.float32))
