"""Hopenet (Ruiz et al., CVPR-W 2018): fine-grained head pose from a face crop, used for Diversity.

Architecture of natanielruiz/deep-head-pose ``code/hopenet.py`` ``Hopenet(Bottleneck, [3, 4, 6, 3], 66)``:
a ResNet-50 trunk (torchvision layout, so state-dict names match) and three 66-bin classifiers for yaw,
pitch and roll (3-degree bins over [-99, 99)). The continuous angle is the softmax expectation
``sum_i p_i * i * 3 - 99`` degrees (``test_on_video_dlib.py``). Input ``[B, 3, 224, 224]`` ImageNet-normalised
RGB; outputs logits ``[B, 66]`` x3 and the pooled embedding ``[B, 2048]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HopenetConfig", "Hopenet"]


@dataclass
class HopenetConfig:
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)  # ResNet-50
    num_bins: int = 66
    bin_width_deg: float = 3.0
    angle_offset_deg: float = 99.0


class Hopenet(nn.Module):
    """ResNet-50 trunk + ``fc_yaw`` / ``fc_pitch`` / ``fc_roll`` (``fc_finetune`` kept only for loading)."""

    def __init__(self, config: HopenetConfig | None = None):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        self.config = config = config or HopenetConfig()
        trunk = ResNet(Bottleneck, list(config.layers))
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
            setattr(self, name, getattr(trunk, name))
        self.fc_yaw = nn.Linear(2048, config.num_bins)
        self.fc_pitch = nn.Linear(2048, config.num_bins)
        self.fc_roll = nn.Linear(2048, config.num_bins)
        self.fc_finetune = nn.Linear(2048 + 3, 3)  # present in the official checkpoint, unused at inference

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 224, 224]`` -> pooled features ``[B, 2048]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bin logits (yaw, pitch, roll), each ``[B, num_bins]``."""
        e = self.embedding(x)
        return self.fc_yaw(e), self.fc_pitch(e), self.fc_roll(e)

    def angles(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, num_bins]`` logits -> expected angle in degrees ``[B]``."""
        idx = torch.arange(self.config.num_bins, dtype=logits.dtype, device=logits.device)
        return (logits.softmax(-1) * idx).sum(-1) * self.config.bin_width_deg - self.config.angle_offset_deg
