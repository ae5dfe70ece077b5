"""IResNet, the ArcFace backbone of insightface ``recognition/arcface_torch`` (Deng et al., CVPR 2019).

The paper computes CSIM with ArcFace identity embeddings (Sec. 4.1). This is the architecture of
arcface_torch's ``backbones/iresnet.py`` (state-dict names kept so its ``backbone.pth`` loads as is):
a 3x3 stem, four stages of pre-activation basic blocks (BN-conv-BN-PReLU-conv-BN, stride 2 in the first
block of each stage), BN, flatten, FC to 512, BN1d. Depths: r18 (2,2,2,2), r34 (3,4,6,3), r50 (3,4,14,3),
r100 (3,13,30,3). Input ``[B, 3, 112, 112]`` RGB scaled to [-1, 1]; output ``[B, 512]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["IResNetConfig", "IResNet", "IResNetBlock"]


@dataclass
class IResNetConfig:
    layers: tuple[int, int, int, int] = (3, 13, 30, 3)  # r100
    num_features: int = 512
    input_size: int = 112


class IResNetBlock(nn.Module):
    """Pre-activation basic block; ``downsample`` (1x1 conv + BN) when stride or width changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """``[B, 3, 112, 112]`` in [-1, 1] -> identity embedding ``[B, 512]``."""

    def __init__(self, config: IResNetConfig | None = None):
        super().__init__()
        self.config = config = config or IResNetConfig()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, (planes, depth) in enumerate(zip(widths, config.layers)):
            blocks = [IResNetBlock(inplanes, planes, stride=2)]
            blocks += [IResNetBlock(planes, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        side = config.input_size // 16  # four stride-2 stages: 112 -> 7
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * side * side, config.num_features)
        self.features = nn.BatchNorm1d(config.num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.bn2(x).flatten(1)  # [B, 512 * 7 * 7]
        return self.features(self.fc(self.dropout(x)))
