"""The 3DMM coefficient regressor (paper Sec. 3.1 and Fig. 3 "R_e"; Deep3DFaceRecon [5]).

An aligned 224x224 face crop (RGB in [0, 1], ``face.align``) -> 257 coefficients of the morphable model:

    coeffs = [alpha id 80 | beta exp 64 | delta tex 80 | r angle 3 | gamma light 27 | t trans 3]    (Eq. 1)

A ResNet backbone (torchvision layout, no final fc) is followed by one 1x1 conv head per coefficient group
on the 1x1 pooled features; the translation has two heads (tx, ty) and (tz). SadTalker keeps beta, r, t of
the source image (70 numbers, 73 with the crop parameters; layouts in ``coeffs``).

Official: ``ReconNetWrapper`` in ``src/face3d/models/networks.py`` (``net_recon='resnet50'``,
``use_last_fc=False``); it is the ``face_3drecon`` section of the safetensors files and ``net_recon`` in
``epoch_20.pth``. Key names are the official ones (``backbone.*`` torchvision names, ``final_layers.{0..6}``).
The coefficient layout is defined once, in ``sadtalker_lib.morphable.model`` (``COEFF_257_SLICES``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from ..morphable.model import COEFF_257_SLICES

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "BACKBONES",
    "RegressorConfig",
    "CoefficientRegressor",
    "FaceCoefficients",
    "split_coeffs",
    "HEAD_SIZES",
]


def _conv1x1(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=bias)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs (stride on the first). [B, C_in, H, W] -> [B, planes, H/s, W/s]."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    """ResNet-50 block (v1.5: stride on the 3x3 conv): 1x1 -> 3x3 -> 1x1 (x4).

    [B, C_in, H, W] -> [B, 4 planes, H/s, W/s].
    """

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (strided 1x1 conv + BN; torchvision key ``downsample.{0,1}``) when the shape changes."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


# name -> (block, blocks per stage); torchvision's definitions.
BACKBONES: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """Torchvision ResNet without the classifier: [B, 3, H, W] -> pooled features [B, 512 * expansion, 1, 1]."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int, int], width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = width
        for i, count in enumerate(layers):
            planes = width * 2**i
            stage = [block(c_in, planes, stride=1 if i == 0 else 2)]
            c_in = planes * block.expansion
            stage += [block(c_in, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.out_channels = c_in
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [B, 512 * e, H/32, W/32]
        return self.avgpool(x)  # [B, 512 * e, 1, 1]


# Output heads in official order (final_layers.0 .. 6); the translation is split into (tx, ty) and tz.
HEAD_SIZES: tuple[tuple[str, int], ...] = tuple(
    (name, s.stop - s.start) for name, s in COEFF_257_SLICES.items() if name != "trans"
) + (("trans_xy", 2), ("trans_z", 1))
NUM_COEFFS = sum(n for _, n in HEAD_SIZES)  # 257


@dataclass(frozen=True)
class RegressorConfig:
    """Backbone choice. The official checkpoint is ``resnet50``; resnet18/34 give a small trainable regressor."""

    backbone: str = "resnet50"
    width: int = 64  # stem / first-stage width (torchvision 64)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{self.backbone}'; choose one of {sorted(BACKBONES)}")


class CoefficientRegressor(nn.Module):
    """Aligned face crop [B, 3, 224, 224] (RGB in [0, 1]) -> 3DMM coefficients [B, 257] (``split_coeffs``)."""

    def __init__(self, config: RegressorConfig | None = None):
        super().__init__()
        self.config = c = config or RegressorConfig()
        block, layers = BACKBONES[c.backbone]
        self.backbone = ResNet(block, layers, width=c.width)
        self.final_layers = nn.ModuleList(
            [_conv1x1(self.backbone.out_channels, n, bias=True) for _, n in HEAD_SIZES]
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"CoefficientRegressor expects RGB images [B, 3, 224, 224], got {tuple(image.shape)}")
        x = self.backbone(image)  # [B, C, 1, 1]
        return torch.cat([head(x) for head in self.final_layers], dim=1).flatten(1)  # [B, 257]


@dataclass
class FaceCoefficients:
    """The six groups of the 257 coefficients (each [..., n])."""

    id: torch.Tensor  # alpha, 80
    exp: torch.Tensor  # beta, 64
    tex: torch.Tensor  # delta, 80
    angle: torch.Tensor  # r (radians: pitch, yaw, roll about x, y, z), 3
    gamma: torch.Tensor  # SH lighting, 27
    trans: torch.Tensor  # t, 3

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def split_coeffs(coeffs: torch.Tensor) -> FaceCoefficients:
    """[..., 257] -> :class:`FaceCoefficients` (layout ``morphable.model.COEFF_257_SLICES``)."""
    if coeffs.shape[-1] != NUM_COEFFS:
        raise ValueError(f"expected {NUM_COEFFS} coefficients (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3), "
                         f"got shape {tuple(coeffs.shape)}")
    return FaceCoefficients(**{name: coeffs[..., s] for name, s in COEFF_257_SLICES.items()})
