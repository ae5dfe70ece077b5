"""Head pose and expression estimator of face-vid2vid (HEEstimator; "motion" branch of face-vid2vid Fig. 2).

Image [B, 3, H, W] -> ResNet-style trunk of bottleneck blocks -> global average -> linear heads: head-pose
bin logits yaw / pitch / roll [B, 66], translation t [B, 3] and expression deltas [B, 3K]. In face-vid2vid
this is how a *driving video* moves the keypoints; SadTalker replaces it at inference by the MappingNet
(``models.mapping``), which predicts the same quantities from 3DMM coefficients. The official inference
never calls it (it is loaded only in ``--old_version`` mode); it is kept for training the renderer and for
comparing the two motion sources.

    conv1 7x7 /2 + BN + ReLU + maxpool /2          [B, 64, H/4, W/4]   (official; config ``stem_downsample``)
    stage 1: conv2 1x1 -> 256 + BN + ReLU, block1 = 3 bottlenecks
    stage 2: conv3 1x1 -> 512, block2 = bottleneck /2, block3 = 3 bottlenecks
    stage 3: conv4 1x1 -> 1024, block4 = bottleneck /2, block5 = 5 bottlenecks
    stage 4: conv5 1x1 -> 2048, block6 = bottleneck /2, block7 = 2 bottlenecks       [B, 2048, H/32, W/32]

Official: ``HEEstimator`` in ``src/facerender/modules/keypoint_detector.py`` (blocks: ``ResBottleneck`` in
``src/facerender/modules/util.py``), ``facerender.yaml`` ``he_estimator_params``. Our key names are the
official ones except for one quirk: the official forward returns ``yaw = fc_roll(x)`` and
``roll = fc_yaw(x)``; here ``fc_yaw`` produces yaw and the swap lives in ``KEY_MAPS["he_estimator"]``
(see ``official.HE_ESTIMATOR_SWAPPED_HEADS``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HEEstimatorConfig", "ResBottleneck", "HEEstimator"]


class ResBottleneck(nn.Module):
    """Bottleneck residual block, width kept: [B, C, H, W] -> [B, C, H/s, W/s].

    1x1 (C -> C/4) -> 3x3 stride s -> 1x1 (-> C), each conv with bias + BatchNorm (ReLU after the first two);
    with stride 2 the skip path is a strided 1x1 conv + BN. ReLU after the sum.
    """

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        assert channels % 4 == 0, f"bottleneck width {channels} must be divisible by 4"
        mid = channels // 4
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, channels, kernel_size=1)
        self.norm1 = nn.BatchNorm2d(mid)
        self.norm2 = nn.BatchNorm2d(mid)
        self.norm3 = nn.BatchNorm2d(channels)
        self.stride = stride
        if stride != 1:
            self.skip = nn.Conv2d(channels, channels, kernel_size=1, stride=stride)
            self.norm4 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        if self.stride != 1:
            x = self.norm4(self.skip(x))
        return F.relu(out + x)


@dataclass(frozen=True)
class HEEstimatorConfig:
    """``facerender.yaml`` ``he_estimator_params`` + the fixed official stage layout.

    widths: channels of the four stages (official 256, 512, 1024, 2048, hard-coded in the official code).
    blocks: stride-1 bottlenecks per stage (official 3, 3, 5, 2); stages 2-4 start with one stride-2 block.
    stem_downsample: how much the stem shrinks the frame before stage 1: 4 (official: conv1 stride 2, then the
    max-pool), 2 (conv1 stride 2, no max-pool) or 1 (neither). Not an official option; it has no weights, so
    official checkpoints load whatever it is. At 256 px the official stages start at 64 x 64; a 64 px frame
    starts at 16 x 16 with 4 and at 64 x 64 with 1.
    """

    image_channel: int = 3
    block_expansion: int = 64  # conv1 output channels
    num_kp: int = 15
    num_bins: int = 66
    widths: tuple[int, int, int, int] = (256, 512, 1024, 2048)
    blocks: tuple[int, int, int, int] = (3, 3, 5, 2)
    stem_downsample: int = 4

    @classmethod
    def tiny(cls) -> "HEEstimatorConfig":
        """Few-channel preset for CPU tests and toy training (input sides divisible by 32)."""
        return cls(block_expansion=8, widths=(16, 16, 32, 32), blocks=(1, 1, 1, 1))

    def __post_init__(self):
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise ValueError(f"HEEstimatorConfig needs 4 stage widths and 4 block counts, "
                             f"got {self.widths}, {self.blocks}")
        if any(w % 4 for w in self.widths):
            raise ValueError(f"stage widths must be divisible by 4 (bottleneck), got {self.widths}")
        if self.stem_downsample not in (1, 2, 4):
            raise ValueError(f"stem_downsample must be 1, 2 or 4 (official 4), got {self.stem_downsample}")


class HEEstimator(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> dict ``yaw``, ``pitch``, ``roll`` [B, num_bins] (bin logits),
    ``t`` [B, 3], ``exp`` [B, 3 * num_kp]. Degrees: ``motion.headpose_pred_to_degree``."""

    def __init__(self, config: HEEstimatorConfig | None = None):
        super().__init__()
        self.config = c = config or HEEstimatorConfig()
        self.conv1 = nn.Conv2d(c.image_channel, c.block_expansion, kernel_size=7, padding=3,
                               stride=1 if c.stem_downsample == 1 else 2)
        self.norm1 = nn.BatchNorm2d(c.block_expansion)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if c.stem_downsample == 4 else nn.Identity()
        # Stage s (1..4): conv{s+1} / norm{s+1} (1x1 width change), then for s >= 2 a stride-2 block, then a
        # Sequential of stride-1 blocks. Official attribute names: block1 (b1_i); block2, block3 (b3_i); block4,
        # block5 (b5_i); block6, block7 (b7_i).
        in_ch, n = c.block_expansion, 1
        for s, (width, count) in enumerate(zip(c.widths, c.blocks), start=1):
            setattr(self, f"conv{s + 1}", nn.Conv2d(in_ch, width, kernel_size=1))
            setattr(self, f"norm{s + 1}", nn.BatchNorm2d(width))
            if s > 1:
                setattr(self, f"block{n}", ResBottleneck(width, stride=2))
                n += 1
            seq = nn.Sequential()
            for i in range(count):
                seq.add_module(f"b{n}_{i}", ResBottleneck(width, stride=1))
            setattr(self, f"block{n}", seq)
            n += 1
            in_ch = width
        self.fc_roll = nn.Linear(in_ch, c.num_bins)
        self.fc_pitch = nn.Linear(in_ch, c.num_bins)
        self.fc_yaw = nn.Linear(in_ch, c.num_bins)
        self.fc_t = nn.Linear(in_ch, 3)
        self.fc_exp = nn.Linear(in_ch, 3 * c.num_kp)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> pooled features [B, widths[-1]]."""
        c = self.config
        if image.ndim != 4 or image.shape[1] != c.image_channel:
            raise ValueError(f"HEEstimator expects images [B, {c.image_channel}, H, W], got {tuple(image.shape)}")
        out = self.maxpool(F.relu(self.norm1(self.conv1(image))))  # [B, 64, H/d, W/d], d = stem_downsample
        n = 1
        for s in range(1, 5):
            out = F.relu(getattr(self, f"norm{s + 1}")(getattr(self, f"conv{s + 1}")(out)))
            if s > 1:
                out = getattr(self, f"block{n}")(out)  # stride 2
                n += 1
            out = getattr(self, f"block{n}")(out)
            n += 1
        return F.adaptive_avg_pool2d(out, 1).flatten(1)  # [B, 2048]

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(image)
        return {"yaw": self.fc_yaw(h), "pitch": self.fc_pitch(h), "roll": self.fc_roll(h),
                "t": self.fc_t(h), "exp": self.fc_exp(h)}
