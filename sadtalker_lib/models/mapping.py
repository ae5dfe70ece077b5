"""MappingNet (paper Sec. 3.3, Fig. 5; supp. Fig. B11 d): 3DMM motion coefficients -> face-vid2vid motion.

A window of coefficients around frame t (expression beta and head pose rho, optionally the 3 crop
parameters) is mapped to the motion representation of face-vid2vid for frame t: head-pose bin logits
(yaw, pitch, roll; 66 bins of 3 degrees each, see ``motion.headpose_pred_to_degree``), a translation t and
expression deltas delta (3 per keypoint). The keypoints are then moved as x = R x_c + t + delta
(``motion.keypoint_transformation``). Training supervises the driven keypoints with Eq. 14 (L1).

    window [B, C, 27] -> Conv1d k7 -> [B, 1024, 21]
                      -> 3 x (LeakyReLU(0.1) -> Conv1d k3 dilation 3) + residual cropped by 3 on each side
                         [B, 1024, 21] -> 15 -> 9 -> 3
                      -> average over time [B, 1024] -> linear heads

The paper describes a 5-frame window (t-2 .. t+2); the official release uses 27 frames (radius 13, see
``steps.windows.SEMANTIC_RADIUS``). C = 70 (exp 64 | angle 3 | trans 3; ``mapping_00229``, preprocess crop /
resize / extcrop) or 73 (+ crop params s, tx, ty; ``mapping_00109``, preprocess full / extfull).

Official: ``src/facerender/modules/mapping.py`` with ``src/config/facerender.yaml`` /
``facerender_still.yaml`` ``mapping_params``. State-dict keys are the official ones (``first.0``,
``encoder{i}.1``, ``fc_*``); ``KEY_MAPS["mapping_crop"]`` / ``["mapping_full"]`` are identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MappingNetConfig", "MappingNet"]

# Official encoder geometry: the first conv has kernel 7 and no padding; each encoder layer is a kernel-3
# dilation-3 conv without padding, so it shortens the sequence by 2 * 3 = 6; the residual is the input
# cropped by 3 frames on each side so that both have the same length.
FIRST_KERNEL = 7
ENCODER_KERNEL = 3
ENCODER_DILATION = 3
ENCODER_CROP = (ENCODER_KERNEL - 1) * ENCODER_DILATION // 2  # = 3
LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class MappingNetConfig:
    """``mapping_params`` of the official yaml files (defaults: ``facerender.yaml``, 70 channels)."""

    coeff_nc: int = 70  # input channels: 70 (crop/resize) or 73 (full: + s, tx, ty)
    descriptor_nc: int = 1024
    layer: int = 3
    num_kp: int = 15
    num_bins: int = 66

    @classmethod
    def crop(cls) -> "MappingNetConfig":
        """``facerender.yaml`` (mapping_00229): 70 coefficient channels."""
        return cls(coeff_nc=70)

    @classmethod
    def full(cls) -> "MappingNetConfig":
        """``facerender_still.yaml`` (mapping_00109): 73 channels = 70 + crop params (s, tx, ty)."""
        return cls(coeff_nc=73)

    @classmethod
    def tiny(cls, coeff_nc: int = 70) -> "MappingNetConfig":
        """Few-channel preset for CPU tests and toy training (same window geometry)."""
        return cls(coeff_nc=coeff_nc, descriptor_nc=32)

    @property
    def min_window(self) -> int:
        """Shortest input window the trunk accepts: it must keep at least one frame after every conv."""
        return (FIRST_KERNEL - 1) + self.layer * 2 * ENCODER_CROP + 1

    def __post_init__(self):
        for name in ("coeff_nc", "descriptor_nc", "num_kp", "num_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"MappingNetConfig.{name} must be positive, got {getattr(self, name)}")
        if self.layer < 0:
            raise ValueError(f"MappingNetConfig.layer must be >= 0, got {self.layer}")


class MappingNet(nn.Module):
    """Coefficient window [B, C, W] (W >= 25 with 3 layers; officially 27) -> dict of face-vid2vid motion.

    Returns ``yaw``, ``pitch``, ``roll`` [B, num_bins] (bin logits), ``t`` [B, 3], ``exp`` [B, 3 * num_kp].
    """

    def __init__(self, config: MappingNetConfig | None = None):
        super().__init__()
        self.config = c = config or MappingNetConfig()
        # nn.Sequential wrappers keep the official key names (first.0.*, encoder{i}.1.*).
        self.first = nn.Sequential(nn.Conv1d(c.coeff_nc, c.descriptor_nc, kernel_size=FIRST_KERNEL))
        for i in range(c.layer):
            setattr(self, f"encoder{i}", nn.Sequential(
                nn.LeakyReLU(LEAKY_SLOPE),
                nn.Conv1d(c.descriptor_nc, c.descriptor_nc, kernel_size=ENCODER_KERNEL, dilation=ENCODER_DILATION),
            ))
        self.pooling = nn.AdaptiveAvgPool1d(1)
        self.fc_roll = nn.Linear(c.descriptor_nc, c.num_bins)
        self.fc_pitch = nn.Linear(c.descriptor_nc, c.num_bins)
        self.fc_yaw = nn.Linear(c.descriptor_nc, c.num_bins)
        self.fc_t = nn.Linear(c.descriptor_nc, 3)
        self.fc_exp = nn.Linear(c.descriptor_nc, 3 * c.num_kp)

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """[B, C, W] -> descriptor [B, descriptor_nc] (time-averaged trunk features)."""
        c = self.config
        if window.ndim != 3 or window.shape[1] != c.coeff_nc:
            raise ValueError(f"MappingNet expects a coefficient window [B, {c.coeff_nc}, W], got {tuple(window.shape)}"
                             + (" (70 vs 73 channels: crop vs full preprocess?)" if window.ndim == 3 else ""))
        if window.shape[2] < c.min_window:
            raise ValueError(f"window of {window.shape[2]} frames is too short; MappingNet with {c.layer} layers "
                             f"needs >= {c.min_window} (the official window is 27)")
        out = self.first(window)  # [B, D, W - 6]
        for i in range(c.layer):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, ENCODER_CROP:-ENCODER_CROP]  # [B, D, L - 6]
        return self.pooling(out).flatten(1)  # [B, D]

    def forward(self, window: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encode(window)
        return {"yaw": self.fc_yaw(h), "pitch": self.fc_pitch(h), "roll": self.fc_roll(h),
                "t": self.fc_t(h), "exp": self.fc_exp(h)}
