"""SyncNet (Chung & Zisserman, ACCV-W 2016), the network behind LSE-C / LSE-D.

Architecture of ``SyncNetModel.S`` in joonson/syncnet_python (the model of ``syncnet_v2.model``, which
Wav2Lip's ``evaluation/scores_LSE`` and the SadTalker paper use): two towers that map 0.2 s of audio and
the matching 5 video frames to 1024-d embeddings whose Euclidean distance is small when lips and speech
are in sync. Only layers and forward here; weights, crops and the offset search live in ``eval/lse.py``.

Inputs (the official evaluation's layout):
* audio ``[B, 1, 13, 20]``: 13 MFCC coefficients x 20 MFCC frames (4 per video frame, 100 per second);
* lips ``[B, 3, 5, 224, 224]``: 5 consecutive BGR face crops, pixel values 0..255 (no normalisation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["SyncNetConfig", "SyncNet", "OFFICIAL_KEY_PREFIXES"]

# state-dict renames: official SyncNetModel.S attribute -> ours (the layers inside keep their indices)
OFFICIAL_KEY_PREFIXES = [
    ("netcnnaud.", "audio_encoder."),
    ("netfcaud.", "audio_head."),
    ("netcnnlip.", "lip_encoder."),
    ("netfclip.", "lip_head."),
]


@dataclass
class SyncNetConfig:
    """``S(num_layers_in_fc_layers=1024)`` as used by ``SyncNetInstance``."""

    embedding_dim: int = 1024
    num_frames: int = 5  # video frames per window (0.2 s at 25 fps)
    mfcc_frames: int = 20  # MFCC frames per window (0.2 s at 100 Hz)
    num_mfcc: int = 13
    image_size: int = 224


def _conv_bn_relu(conv: nn.Module, channels: int, bn=nn.BatchNorm2d) -> list[nn.Module]:
    return [conv, bn(channels), nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    """Two-layer MLP 512 -> 512 -> dim (``netfcaud`` / ``netfclip``)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Audio and lip towers; ``forward_audio`` / ``forward_lips`` give ``[B, embedding_dim]``."""

    def __init__(self, config: SyncNetConfig | None = None):
        super().__init__()
        self.config = config = config or SyncNetConfig()
        c2, c3 = nn.Conv2d, nn.Conv3d
        # audio: [B, 1, 13, 20] -> [B, 512, 1, 1]
        self.audio_encoder = nn.Sequential(
            *_conv_bn_relu(c2(1, 64, 3, 1, 1), 64),
            nn.MaxPool2d(kernel_size=1, stride=1),
            *_conv_bn_relu(c2(64, 192, 3, 1, 1), 192),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),  # [B, 192, 11, 9]
            *_conv_bn_relu(c2(192, 384, 3, padding=1), 384),
            *_conv_bn_relu(c2(384, 256, 3, padding=1), 256),
            *_conv_bn_relu(c2(256, 256, 3, padding=1), 256),
            nn.MaxPool2d(kernel_size=3, stride=2),  # [B, 256, 5, 4]
            c2(256, 512, kernel_size=(5, 4)), nn.BatchNorm2d(512), nn.ReLU(),  # [B, 512, 1, 1]
        )
        self.audio_head = _head(config.embedding_dim)
        bn3 = nn.BatchNorm3d
        # lips: [B, 3, 5, 224, 224] -> [B, 512, 1, 1, 1]
        self.lip_encoder = nn.Sequential(
            *_conv_bn_relu(c3(3, 96, (5, 7, 7), (1, 2, 2), 0), 96, bn3),  # [B, 96, 1, 109, 109]
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 54
            *_conv_bn_relu(c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), 256, bn3),  # 26
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 13
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 6
            *_conv_bn_relu(c3(256, 512, (1, 6, 6), padding=0), 512, bn3),  # 1
        )
        self.lip_head = _head(config.embedding_dim)

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 13, 20]`` MFCC windows -> ``[B, D]``."""
        return self.audio_head(self.audio_encoder(mfcc).flatten(1))

    def forward_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 5, 224, 224]`` BGR 0..255 crops -> ``[B, D]``."""
        return self.lip_head(self.lip_encoder(frames).flatten(1))

    def forward(self, mfcc: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_audio(mfcc), self.forward_lips(frames)
