"""face-vid2vid renderer (SadTalker Sec. 3.3): canonical keypoint detector + occlusion-aware SPADE generator.

    kp_detector = KPDetector(cfg.kp_detector)          # source image -> canonical keypoints [B, 15, 3]
    generator = OcclusionAwareSPADEGenerator(cfg.generator)
    frame = generator(source, kp_source=..., kp_driving=...)["prediction"]   # [B, 3, H, W]

The keypoint transformation (rotation, translation, expression) lives in ``sadtalker_lib.steps.keypoints`` and
the video loop in ``sadtalker_lib.steps.render``. Official checkpoint networks: ``kp_extractor`` and ``generator``
(``sadtalker_lib.official.io.load_official``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .blocks import SPADE, SPADEResnetBlock, make_coordinate_grid
from .dense_motion import DenseMotionConfig, DenseMotionNetwork
from .generator import GeneratorConfig, OcclusionAwareSPADEGenerator, SPADEDecoder
from .keypoint_detector import KPDetector, KPDetectorConfig

__all__ = [
    "FaceVid2VidConfig",
    "KPDetectorConfig",
    "KPDetector",
    "DenseMotionConfig",
    "DenseMotionNetwork",
    "GeneratorConfig",
    "SPADEDecoder",
    "OcclusionAwareSPADEGenerator",
    "SPADE",
    "SPADEResnetBlock",
    "make_coordinate_grid",
]


@dataclass(frozen=True)
class FaceVid2VidConfig:
    """Both renderer networks; defaults are ``src/config/facerender.yaml`` (same as facerender_still.yaml)."""

    kp_detector: KPDetectorConfig = field(default_factory=KPDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    @classmethod
    def tiny(cls) -> "FaceVid2VidConfig":
        """Few-channel networks for CPU tests and toy training; image sides must be divisible by 32."""
        return cls(kp_detector=KPDetectorConfig.tiny(), generator=GeneratorConfig.tiny())

    def __post_init__(self):
        if self.kp_detector.num_kp != self.generator.num_kp:
            raise ValueError(f"num_kp differs: kp_detector {self.kp_detector.num_kp} vs "
                             f"generator {self.generator.num_kp}")

    def build(self) -> tuple[KPDetector, OcclusionAwareSPADEGenerator]:
        """(KPDetector, OcclusionAwareSPADEGenerator) with fresh weights."""
        return KPDetector(self.kp_detector), OcclusionAwareSPADEGenerator(self.generator)
