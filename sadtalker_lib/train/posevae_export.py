"""Exact re-parameterisations of a trained PoseVAE, folded into its weights at export, so that the saved file is
an ordinary official-layout ``auido2pose`` checkpoint that works in raw pose units (radians)."""
from __future__ import annotations

import torch

from ..data.windows import PoseWindows
from ..models.posevae import PoseVAE

__all__ = ["residual_rms", "fold_pose_scale", "fold_audio_standardizer"]


def residual_rms(windows: PoseWindows) -> float:
    """RMS of the residual motion Delta rho = rho_t - rho_0 over all windows, frames and pose values."""
    return float((windows.pose[:, 1:] - windows.pose[:, :1]).pow(2).mean().sqrt())


@torch.no_grad()
def fold_pose_scale(model: PoseVAE, scale: float) -> PoseVAE:
    """Turn a PoseVAE trained on poses / ``scale`` into one that takes and returns raw poses (in place).

    Exact (up to rounding) because poses enter and leave only through linear maps:
    the ref-pose columns 0:6 of both MLPs' first layer and the encoder ResUnet's two input convs (which see
    Delta rho) are divided by ``scale``; the decoder's ``pose_linear`` (weight and bias) is multiplied by it;
    the discriminator's first conv (no bias; it sees rho) is divided by it.
    """
    if scale == 1.0:
        return model
    inv = 1.0 / scale
    model.encoder.MLP.L0.weight[:, :6] *= inv
    model.decoder.MLP.L0.weight[:, :6] *= inv
    model.encoder.resunet.input_layer[0].weight *= inv
    model.encoder.resunet.input_skip[0].weight *= inv
    model.decoder.pose_linear.weight *= scale
    model.decoder.pose_linear.bias *= scale
    model.discriminator.seq[0].conv.weight *= inv
    return model


@torch.no_grad()
def fold_audio_standardizer(model: PoseVAE, mean: torch.Tensor, gain: torch.Tensor) -> PoseVAE:
    """Turn a PoseVAE trained on standardized audio features ``(emb - mean) * gain`` into one that takes the
    encoder's raw features (in place). Exact up to rounding: the features enter only through ``linear_audio`` of
    the encoder and the decoder, W ((e - m) * g) + b = (W diag g) e + (b - (W diag g) m)."""
    for linear in (model.encoder.linear_audio, model.decoder.linear_audio):
        w = linear.weight.double() * gain.double().to(linear.weight.device)  # [6, 512] * [512], float64
        linear.bias.copy_(linear.bias.double() - w @ mean.double().to(w.device))
        linear.weight.copy_(w)
    return model
