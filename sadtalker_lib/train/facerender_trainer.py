"""FaceRender training (paper Sec. 3.3 "As for training", supp. B.3 Eq. 14): face-vid2vid, then the MappingNet.

Stage 1, face-vid2vid self-supervised (:func:`train_facevid2vid`). Two frames of the same clip, a source and a
driving one:

    x_c = KPDetector(source)                                  canonical keypoints [B, 15, 3]
    he_s, he_d = HEEstimator(source), HEEstimator(driving)    pose bins, t, expression deltas
    x_s, x_d = R_s x_c + t_s + delta_s, R_d x_c + t_d + delta_d          (motion.keypoint_transformation)
    frame = Generator(source, x_s, x_d)                       reconstructs the driving frame
    L = perceptual(frame, driving) + 10 equivariance + 10 keypoint prior + 20 head pose + 5 expression

Stage 2, MappingNet with face-vid2vid frozen (:func:`train_mapping`). The driving frame's coefficient window
(radius 13, ``semantics.frame_windows``) and the source's constant window (``semantics.source_window``, as at
inference) go through the MappingNet instead of the HEEstimator:

    K'_s, K'_d = transform(x_c, MappingNet(source window)), transform(x_c, MappingNet(driving window))
    K_s, K_d   = the same from the frozen HEEstimator on the real frames ("the motion generator of face-vid2vid")
    L = 20 * Eq. 14 (mean of the source and driving terms) + perceptual(Generator(source, K'_s, K'_d), driving)

Losses: ``facerender_losses``. Hyper-parameters default to the paper / face-vid2vid (Adam lr 2e-4, betas
(0.5, 0.999), batch 32, 256 px, official network sizes: the GPU preset); ``.cpu()`` is a genuinely small
face-vid2vid (the ``tiny`` configs, 64 px frames) that learns visibly in a minute or two on 2 cores. Both
configs take a ``device`` ("cpu" by default, "cuda" for the GPU preset).

Both stages log ``log.csv`` (train and held-out rows) and write resumable checkpoints
(``checkpoints/<stem>_<step>-model.pth``: official layout + optimizer + RNG state, via ``train.common``); a run
killed after step k and resumed ends with the same weights as an uninterrupted one. At the end the run folder
is a checkpoint folder in the official layout (``networks.save_networks``): ``SadTalker_V0.0.2_256.safetensors``
(kp_extractor + generator), ``facevid2vid_00189-model.pth.tar`` (kp_detector + generator + he_estimator),
after stage 2 ``mapping_00229-model.pth.tar``, and ``sadtalker_lab.json`` (the network configs and
``facerender.image_size``, the frame size the renderer was trained at).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..official.io import load_official, save_official_pth
from ..models.facevid2vid import GeneratorConfig, KPDetector, KPDetectorConfig, OcclusionAwareSPADEGenerator
from ..models.facevid2vid.head_pose import HEEstimator, HEEstimatorConfig
from ..models.mapping import MappingNet, MappingNetConfig
from ..motion import keypoint_transformation, pose_degrees
from ..official.registry import CONFIG_FILE, build_network, read_configs, save_networks
from ..official import OFFICIAL_NETWORKS
from ..semantics import SEMANTIC_RADIUS, frame_windows, source_window
from .common import (
    LR_FACERENDER,
    CSVLogger,
    TrainConfig,
    TrainHistory,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    progress,
    restore_training_state,
    save_training_checkpoint,
    step_generator,
    step_rng,
)
from .facerender_losses import (
    PYRAMID_SCALES,
    ImagePyramid,
    RandomWarp,
    coeff_pose_degrees,
    equivariance_loss,
    expression_prior_loss,
    headpose_loss,
    keypoint_l1,
    keypoint_prior_loss,
    pyramid_l1,
)

__all__ = [
    "FaceVid2VidTrainConfig",
    "MappingTrainConfig",
    "FramePairs",
    "FaceRenderClips",
    "split_clips",
    "Renderer",
    "save_renderer",
    "load_renderer",
    "load_mapping",
    "facevid2vid_step_losses",
    "mapping_step_losses",
    "FaceVid2VidMetrics",
    "MappingMetrics",
    "evaluate_facevid2vid",
    "evaluate_mapping",
    "render_pairs",
    "FaceVid2VidRun",
    "MappingRun",
    "train_facevid2vid",
    "train_mapping",
]

STEM_FACEVID2VID = "facevid2vid"  # checkpoints/facevid2vid_<step>-model.pth (the official file's stem)
STEM_MAPPING = "mapping"
FV2V_ADAM_BETAS = (0.5, 0.999)  # face-vid2vid train.py: every Adam uses betas (0.5, 0.999)
FV2V_BATCH = 32  # face-vid2vid config/vox-256.yaml train_params.batch_size
FV2V_PERCEPTUAL = (10.0, 10.0, 10.0, 10.0)  # vox-256.yaml perceptual weight 10 (per level here, see losses)
LAMBDA_EQUIVARIANCE = 10.0  # vox-256.yaml loss_weights.equivariance_value
LAMBDA_KEYPOINT_PRIOR = 10.0  # loss_weights.keypoint
LAMBDA_HEADPOSE = 20.0  # loss_weights.headpose
LAMBDA_EXPRESSION = 5.0  # loss_weights.expression
LAMBDA_MAPPING_KEYPOINT = 20.0  # paper supp. B.3: "The weight of L_1 [Eq. 14] is set to 20"


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceVid2VidTrainConfig(TrainConfig):
    """Stage 1 settings. Defaults = the GPU preset: official network sizes, 256 px, face-vid2vid's loss weights.

    image_size: frame side in px (a multiple of 32 for the KPDetector / HEEstimator).
    kp_detector / generator / he_estimator: the network configs (official defaults; ``.cpu()``: ``tiny``).
    perceptual_weights: one weight per pyramid scale (``pyramid_scales``) of the pixel pyramid L1.
    lambda_*: the other face-vid2vid terms (0 switches a term off). sigma_affine / sigma_tps / points_tps: the
    random warp of the equivariance term (vox-256.yaml transform_params). eval_pairs: held-out (source,
    driving) pairs scored every ``eval_every`` steps. device: where the networks run ("cpu", "cuda").
    """

    lr: float = LR_FACERENDER
    adam_betas: tuple[float, float] = FV2V_ADAM_BETAS
    batch_size: int = FV2V_BATCH
    image_size: int = 256
    kp_detector: KPDetectorConfig = field(default_factory=KPDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    he_estimator: HEEstimatorConfig = field(default_factory=HEEstimatorConfig)
    pyramid_scales: tuple[float, ...] = PYRAMID_SCALES
    perceptual_weights: tuple[float, ...] = FV2V_PERCEPTUAL
    lambda_equivariance: float = LAMBDA_EQUIVARIANCE
    lambda_keypoint: float = LAMBDA_KEYPOINT_PRIOR
    lambda_headpose: float = LAMBDA_HEADPOSE
    lambda_expression: float = LAMBDA_EXPRESSION
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5
    eval_pairs: int = 64
    device: str = "cpu"

    def __post_init__(self):
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (KPDetector / HEEstimator), got {self.image_size}")
        if len(self.perceptual_weights) != len(self.pyramid_scales):
            raise ValueError(f"{len(self.perceptual_weights)} perceptual weights for scales {self.pyramid_scales}")
        if self.kp_detector.num_kp != self.generator.num_kp or self.generator.num_kp != self.he_estimator.num_kp:
            raise ValueError("kp_detector, generator and he_estimator must agree on num_kp")

    @classmethod
    def gpu(cls, **changes) -> "FaceVid2VidTrainConfig":
        """The GPU preset: official sizes and face-vid2vid's hyper-parameters (same as the defaults)."""
        return cls(**changes)

    @classmethod
    def cpu(cls, **changes) -> "FaceVid2VidTrainConfig":
        """Small CPU preset (notebooks, CI): the ``tiny`` networks at 64 px, 150 steps of 4 pairs, lr 1e-3 (5x the
        paper's 2e-4 so that a minute shows), held-out loss every 25 steps, checkpoints every 50; one torch
        thread (two ran several times slower on 2 cores shared with other work)."""
        base = dict(image_size=64, kp_detector=KPDetectorConfig.tiny(), generator=GeneratorConfig.tiny(),
                    he_estimator=HEEstimatorConfig.tiny(), steps=150, batch_size=4, lr=1e-3, eval_every=25,
                    checkpoint_every=50, eval_pairs=16, num_threads=1)
        return cls(**{**base, **changes})


@dataclass
class MappingTrainConfig(TrainConfig):
    """Stage 2 settings (MappingNet, face-vid2vid frozen). Defaults = the GPU preset (official MappingNet).

    mapping: the MappingNet config (70 channels: ``mapping_crop``; 73: ``mapping_full``, needs crop params).
    radius: coefficient window radius (13: windows of 27 frames, as released). lambda_keypoint: Eq. 14 weight
    (20). perceptual_weights: the image terms on the generated frame (all 0: keypoints only, no rendering).
    device: where the networks run ("cpu", "cuda").
    """

    lr: float = LR_FACERENDER
    adam_betas: tuple[float, float] = FV2V_ADAM_BETAS
    batch_size: int = FV2V_BATCH
    mapping: MappingNetConfig = field(default_factory=MappingNetConfig.crop)
    radius: int = SEMANTIC_RADIUS
    lambda_keypoint: float = LAMBDA_MAPPING_KEYPOINT
    pyramid_scales: tuple[float, ...] = PYRAMID_SCALES
    perceptual_weights: tuple[float, ...] = FV2V_PERCEPTUAL
    eval_pairs: int = 64
    device: str = "cpu"

    def __post_init__(self):
        if len(self.perceptual_weights) != len(self.pyramid_scales):
            raise ValueError(f"{len(self.perceptual_weights)} perceptual weights for scales {self.pyramid_scales}")
        if 2 * self.radius + 1 < self.mapping.min_window:
            raise ValueError(f"radius {self.radius} gives {2 * self.radius + 1}-frame windows; the MappingNet needs "
                             f">= {self.mapping.min_window}")

    @property
    def network(self) -> str:
        """The official network name: mapping_crop (70 channels) or mapping_full (73)."""
        return "mapping_full" if self.mapping.coeff_nc == 73 else "mapping_crop"

    @classmethod
    def gpu(cls, **changes) -> "MappingTrainConfig":
        return cls(**changes)

    @classmethod
    def cpu(cls, **changes) -> "MappingTrainConfig":
        """Small CPU preset: the ``tiny`` MappingNet, 150 steps of 4 pairs, lr 1e-3 (5x the paper's), held-out every
        25 steps, checkpoints every 50; one torch thread."""
        base = dict(mapping=MappingNetConfig.tiny(70), steps=150, batch_size=4, lr=1e-3, eval_every=25,
                    checkpoint_every=50, eval_pairs=16, num_threads=1)
        return cls(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# Data: (source, driving) frame pairs of the same clip
# ---------------------------------------------------------------------------------------------
@dataclass
class FramePairs:
    """A batch of (source, driving) pairs from the same clips.

    source / driving [B, 3, S, S] float in [0, 1]; source_coeffs / driving_coeffs [B, C] (exp 64 | angle 3 |
    trans 3); source_window [B, C, W] (the source coefficients repeated, as at inference); driving_window
    [B, C, W] (frames t-r .. t+r, clamped at the clip ends). clip / source_index / driving_index [B] long.
    """

    source: torch.Tensor
    driving: torch.Tensor
    source_coeffs: torch.Tensor
    driving_coeffs: torch.Tensor
    source_window: torch.Tensor
    driving_window: torch.Tensor
    clip: torch.Tensor
    source_index: torch.Tensor
    driving_index: torch.Tensor

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, i) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name)[i] for f in fields(self)})

    def to(self, device) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _resize_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, size, size] (anti-aliased bilinear when the size changes)."""
    x = torch.as_tensor(np.asarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[2:] == (size, size):
        return x.to(torch.uint8)
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


class FaceRenderClips:
    """Clips held in memory for FaceRender training: frames (resized to ``image_size``) and coefficients.

    frames: per clip uint8 [T, H, W, 3] (the corpus format); coeffs: per clip [T, C] (C = 70, or 73 with crop
    params). :meth:`from_corpus` reads a corpus folder (``data.corpus`` format, either builder).
    """

    def __init__(self, frames: Sequence, coeffs: Sequence, image_size: int, ids: Sequence[str] | None = None):
        if len(frames) != len(coeffs) or not len(frames):
            raise ValueError(f"need as many coefficient arrays as frame arrays (>= 1), "
                             f"got {len(frames)} and {len(coeffs)}")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.image_size = int(image_size)
        self.frames = [_resize_frames(f, self.image_size) for f in frames]
        self.coeffs = [torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in coeffs]
        for k, (f, c) in enumerate(zip(self.frames, self.coeffs)):
            if c.ndim != 2 or c.shape[0] != f.shape[0] or c.shape[1] < 70:
                raise ValueError(f"clip {k}: coefficients {tuple(c.shape)} do not fit {f.shape[0]} frames x >= 70")
        self.ids = list(ids) if ids is not None else [f"clip_{k:04d}" for k in range(len(self.frames))]
        self._windows: dict[int, list[torch.Tensor]] = {}

    @classmethod
    def from_corpus(cls, root: str | os.PathLike, clips: Sequence | None = None,
                    image_size: int = 64) -> "FaceRenderClips":
        """Frames + coefficients of a corpus folder (``clips``: ids or positions; default all)."""
        from ..data.corpus import load_clip, load_index

        entries = load_index(root)["clips"]
        if clips is not None:
            by_id = {c["id"]: c for c in entries}
            entries = [entries[c] if isinstance(c, (int, np.integer)) else by_id[c] for c in clips]
        frames, coeffs = [], []
        for e in entries:
            a = load_clip(root, e)
            frames.append(a["frames"])
            coeffs.append(a["coeffs"])
        return cls(frames, coeffs, image_size, ids=[e["id"] for e in entries])

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_frames(self) -> int:
        return sum(f.shape[0] for f in self.frames)

    @property
    def coeff_channels(self) -> int:
        return self.coeffs[0].shape[1]

    def windows(self, k: int, radius: int = SEMANTIC_RADIUS) -> torch.Tensor:
        """Coefficient windows of clip k: [T, C, 2 radius + 1] (``semantics.frame_windows``, cached)."""
        cache = self._windows.setdefault(radius, [None] * len(self))
        if cache[k] is None:
            cache[k] = frame_windows(self.coeffs[k], radius).to(torch.float32)
        return cache[k]

    def pairs(self, clip: Sequence[int], source: Sequence[int], driving: Sequence[int],
              radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """The pairs (clip[i], frame source[i]) -> (clip[i], frame driving[i])."""
        clip, source, driving = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (clip, source, driving))
        src, drv, sc, dc, sw, dw = [], [], [], [], [], []
        for k, s, d in zip(clip, source, driving):
            f, c = self.frames[k], self.coeffs[k]
            src.append(f[s])
            drv.append(f[d])
            sc.append(c[s])
            dc.append(c[d])
            sw.append(source_window(c[s], radius))
            dw.append(self.windows(int(k), radius)[d])
        as_float = lambda xs: torch.stack(xs).float() / 255.0  # noqa: E731
        return FramePairs(source=as_float(src), driving=as_float(drv), source_coeffs=torch.stack(sc),
                          driving_coeffs=torch.stack(dc), source_window=torch.stack(sw),
                          driving_window=torch.stack(dw), clip=torch.as_tensor(clip),
                          source_index=torch.as_tensor(source), driving_index=torch.as_tensor(driving))

    def sample(self, batch_size: int, rng: np.random.Generator, radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """Random pairs: a clip, then two independent frames of it (face-vid2vid's sampling)."""
        clip = rng.integers(len(self), size=batch_size)
        lengths = np.array([self.frames[k].shape[0] for k in clip])
        source = (rng.random(batch_size) * lengths).astype(np.int64)
        driving = (rng.random(batch_size) * lengths).astype(np.int64)
        return self.pairs(clip, source, driving, radius)

    def fixed_pairs(self, n: int, seed: int = 0, radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """``n`` pairs that depend only on ``seed`` (the held-out set of a run)."""
        return self.sample(n, np.random.default_rng([int(seed), 0xFACE]), radius)


def split_clips(root: str | os.PathLike, n_heldout: int = 1) -> tuple[list[str], list[str]]:
    """Clip ids of a corpus folder split into (train, held-out): the last ``n_heldout`` clips are held out."""
    from ..data.corpus import load_index

    ids = [c["id"] for c in load_index(root)["clips"]]
    if not 0 < n_heldout < len(ids):
        raise ValueError(f"n_heldout must be in 1..{len(ids) - 1} for a corpus of {len(ids)} clips, got {n_heldout}")
    return ids[:-n_heldout], ids[-n_heldout:]


# ---------------------------------------------------------------------------------------------
# The renderer networks, saving and loading
# ---------------------------------------------------------------------------------------------
@dataclass
class Renderer:
    """face-vid2vid's three networks plus the frame size they were trained at."""

    kp_detector: KPDetector
    generator: OcclusionAwareSPADEGenerator
    he_estimator: HEEstimator
    image_size: int

    @classmethod
    def build(cls, config: FaceVid2VidTrainConfig, seed: int | None = None) -> "Renderer":
        """Fresh networks (torch seeded with ``seed``, default ``config.seed``)."""
        torch.manual_seed(config.seed if seed is None else seed)
        return cls(KPDetector(config.kp_detector), OcclusionAwareSPADEGenerator(config.generator),
                   HEEstimator(config.he_estimator), config.image_size)

    def modules(self) -> dict[str, nn.Module]:
        """Official network name -> module."""
        return {"kp_extractor": self.kp_detector, "generator": self.generator, "he_estimator": self.he_estimator}

    def configs(self) -> dict[str, object]:
        return {n: m.config for n, m in self.modules().items()}

    def parameters(self):
        for m in self.modules().values():
            yield from m.parameters()

    def to(self, device) -> "Renderer":
        for m in self.modules().values():
            m.to(device)
        return self

    def train(self, mode: bool = True) -> "Renderer":
        for m in self.modules().values():
            m.train(mode)
        return self

    def eval(self) -> "Renderer":
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.generator.training

    def freeze(self) -> "Renderer":
        """Eval mode and no gradients for the weights (stage 2)."""
        for m in self.modules().values():
            m.eval().requires_grad_(False)
        return self


def _safetensors_size(image_size: int) -> int:
    """The size in the safetensors file name: 256 up to 256 px frames, else 512 (the official two)."""
    return 256 if image_size <= 256 else 512


def save_renderer(folder: str | os.PathLike, renderer: Renderer, mapping: MappingNet | None = None,
                  **info) -> Path:
    """Write the official layout into ``folder`` (see the module docstring); ``info`` goes into
    ``sadtalker_lab.json`` under ``facerender`` together with ``image_size``."""
    folder = Path(folder)
    nets: dict[str, nn.Module] = {"kp_extractor": renderer.kp_detector, "generator": renderer.generator}
    configs = renderer.configs()
    if mapping is not None:
        name = "mapping_full" if mapping.config.coeff_nc == 73 else "mapping_crop"
        nets[name] = mapping
        configs[name] = mapping.config
    save_networks(folder, nets, configs, size=_safetensors_size(renderer.image_size),
                  facerender={"image_size": int(renderer.image_size), **info})
    # the complete old-version file too (save_networks writes only the networks it was given there)
    save_official_pth(renderer.modules(), folder / OFFICIAL_NETWORKS["generator"].pth_file)
    return folder


def _image_size_of(folder: Path, default: int = 256) -> int:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return default
    return int(json.loads(path.read_text()).get("facerender", {}).get("image_size", default))


def load_renderer(folder: str | os.PathLike) -> Renderer:
    """The face-vid2vid networks of a checkpoint folder (trained here, or official), in eval mode.

    Configs come from ``sadtalker_lab.json`` (``networks.read_configs``); without one the official sizes.
    kp_extractor / generator: the safetensors when present, else the .pth.tar; he_estimator: the .pth.tar.
    """
    folder = Path(folder)
    configs = read_configs(folder)
    size = _image_size_of(folder)
    nets = {}
    for name in ("kp_extractor", "generator", "he_estimator"):
        nets[name] = load_official(build_network(name, configs.get(name)), name, folder,
                                   size=_safetensors_size(size)).eval()
    return Renderer(nets["kp_extractor"], nets["generator"], nets["he_estimator"], size)


def load_mapping(folder: str | os.PathLike, network: str = "mapping_crop") -> MappingNet:
    """The MappingNet of a checkpoint folder (config from ``sadtalker_lab.json`` when present), eval mode."""
    folder = Path(folder)
    return load_official(build_network(network, read_configs(folder).get(network)), network, folder).eval()


# ---------------------------------------------------------------------------------------------
# One step's losses
# ---------------------------------------------------------------------------------------------
def _check_size(batch: FramePairs, image_size: int) -> None:
    if tuple(batch.source.shape[2:]) != (image_size, image_size):
        raise ValueError(f"frames are {tuple(batch.source.shape[2:])}, the renderer works at {image_size} px: "
                         f"build the clips with image_size={image_size}")


def facevid2vid_step_losses(r: Renderer, batch: FramePairs, config: FaceVid2VidTrainConfig, pyramid: ImagePyramid,
                            warp_generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Stage 1 on one batch -> (total loss, {term: unweighted value}, generated driving frames [B, 3, S, S])."""
    _check_size(batch, r.image_size)
    c = config
    b = len(batch)
    kp_c = r.kp_detector(batch.source)  # x_c [B, K, 3]
    # One HEEstimator call on [source | driving | warped driving]: BatchNorm then normalises the three with the
    # same batch statistics. (face-vid2vid makes three calls; with small batches of one identity, separate
    # statistics turn tiny differences between the frames into large keypoint differences.)
    images = [batch.source, batch.driving]
    warp = None
    if c.lambda_equivariance:
        warp = RandomWarp(b, c.sigma_affine, c.sigma_tps, c.points_tps, generator=warp_generator)
        images.append(warp.transform_frame(batch.driving))
    he_all = r.he_estimator(torch.cat(images))
    he_s, he_d, he_t = ({k: v[i * b:(i + 1) * b] for k, v in he_all.items()} for i in range(3))
    kp_s = keypoint_transformation(kp_c, he_s)
    kp_d = keypoint_transformation(kp_c, he_d)
    generated = r.generator(batch.source, kp_source=kp_s, kp_driving=kp_d)
    pred = generated["prediction"]
    perceptual = pyramid_l1(pred, batch.driving, pyramid, c.perceptual_weights)
    total = perceptual
    terms = {"perceptual": float(perceptual.detach())}
    if warp is not None:
        kp_t = keypoint_transformation(kp_c, he_t)
        eq = equivariance_loss(kp_d, kp_t, warp)
        total = total + c.lambda_equivariance * eq
        terms["equivariance"] = float(eq.detach())
    if c.lambda_keypoint:
        prior = keypoint_prior_loss(kp_d)
        total = total + c.lambda_keypoint * prior
        terms["keypoint_prior"] = float(prior.detach())
    if c.lambda_headpose:
        hp = headpose_loss(pose_degrees(he_d), coeff_pose_degrees(batch.driving_coeffs))
        total = total + c.lambda_headpose * hp
        terms["headpose_deg"] = float(hp.detach()) / 3  # mean absolute error per angle, degrees
    if c.lambda_expression:
        ex = expression_prior_loss(he_d["exp"])
        total = total + c.lambda_expression * ex
        terms["expression"] = float(ex.detach())
    terms["image_l1"] = float((pred.detach() - batch.driving).abs().mean())
    # diagnostic: weight of the background (identity) motion in the dense motion masks; near 1 the frame no
    # longer depends on the keypoints
    terms["background_motion"] = float(generated["mask"][:, 0].detach().mean())
    terms["loss"] = float(total.detach())
    return total, terms, pred


def mapping_step_losses(mapping: MappingNet, r: Renderer, batch: FramePairs, config: MappingTrainConfig,
                        pyramid: ImagePyramid) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Stage 2 on one batch (``r`` frozen) -> (total loss, {term: value}, generated frames or None).

    Terms: ``keypoint_l1`` (Eq. 14, mean of the source and driving keypoints), ``keypoint_l1_driving``,
    ``perceptual`` (weighted pyramid L1), ``image_l1`` (plain pixel L1 of the generated driving frame), ``loss``.
    """
    _check_size(batch, r.image_size)
    render = any(config.perceptual_weights)
    with torch.no_grad():  # face-vid2vid's own motion = the targets K_n of Eq. 14
        kp_c = r.kp_detector(batch.source)
        target_s = keypoint_transformation(kp_c, r.he_estimator(batch.source))
        target_d = keypoint_transformation(kp_c, r.he_estimator(batch.driving))
        feature = r.generator.encode_source(batch.source) if render else None
    b = len(batch)
    he = mapping(torch.cat([batch.source_window, batch.driving_window]))  # one call for both, [2B, ...]
    kp_s = keypoint_transformation(kp_c, {k: v[:b] for k, v in he.items()})
    kp_d = keypoint_transformation(kp_c, {k: v[b:] for k, v in he.items()})
    l_d = keypoint_l1(kp_d, target_d)
    l_kp = 0.5 * (keypoint_l1(kp_s, target_s) + l_d)  # Eq. 14
    total = config.lambda_keypoint * l_kp
    terms = {"keypoint_l1": float(l_kp.detach()), "keypoint_l1_driving": float(l_d.detach())}
    pred = None
    if render:
        pred = r.generator.render(feature, kp_source=kp_s, kp_driving=kp_d)["prediction"]
        perceptual = pyramid_l1(pred, batch.driving, pyramid, config.perceptual_weights)
        total = total + perceptual
        terms["perceptual"] = float(perceptual.detach())
        terms["image_l1"] = float((pred.detach() - batch.driving).abs().mean())
    terms["loss"] = float(total.detach())
    return total, terms, pred


# ---------------------------------------------------------------------------------------------
# Held-out metrics and pictures
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceVid2VidMetrics:
    """Held-out stage 1 numbers (eval mode): ``loss`` and its terms (unweighted), ``image_l1`` = mean |generated -
    driving| in [0, 1] pixels, ``headpose_deg`` = mean absolute head-pose error per angle (degrees),
    ``background_motion`` = mean weight of the identity motion in the dense motion masks (a diagnostic)."""

    loss: float
    perceptual: float
    image_l1: float
    equivariance: float = float("nan")
    keypoint_prior: float = float("nan")
    headpose_deg: float = float("nan")
    expression: float = float("nan")
    background_motion: float = float("nan")


@dataclass
class MappingMetrics:
    """Held-out stage 2 numbers: ``keypoint_l1`` (Eq. 14), ``image_l1`` (mean |generated - driving|), and
    ``reference_image_l1``: the same image error with face-vid2vid's own keypoints (HEEstimator on the real
    frame), the floor that the MappingNet can approach."""

    loss: float
    keypoint_l1: float
    keypoint_l1_driving: float
    image_l1: float = float("nan")
    perceptual: float = float("nan")
    reference_image_l1: float = float("nan")


def _chunks(pairs: FramePairs, size: int):
    for s in range(0, len(pairs), size):
        part = pairs[slice(s, s + size)]
        yield part, len(part)


@torch.no_grad()
def evaluate_facevid2vid(r: Renderer, pairs: FramePairs, config: FaceVid2VidTrainConfig, seed: int = 1234,
                         batch_size: int = 16) -> FaceVid2VidMetrics:
    """Stage 1 losses on fixed pairs in eval mode (BatchNorm running statistics); deterministic for ``seed``."""
    was = r.training
    r.eval()
    pyramid = ImagePyramid(config.pyramid_scales).to(pairs.source.device)
    sums: dict[str, float] = {}
    for k, (part, n) in enumerate(_chunks(pairs, batch_size)):
        _, terms, _ = facevid2vid_step_losses(r, part, config, pyramid, step_generator(seed, k))
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v * n
    r.train(was)
    return FaceVid2VidMetrics(**{k: v / len(pairs) for k, v in sums.items()})


@torch.no_grad()
def evaluate_mapping(mapping: MappingNet, r: Renderer, pairs: FramePairs, config: MappingTrainConfig,
                     batch_size: int = 16) -> MappingMetrics:
    """Stage 2 numbers on fixed pairs (renderer in eval mode); adds ``reference_image_l1``."""
    was = r.training, mapping.training
    r.eval()
    mapping.eval()
    pyramid = ImagePyramid(config.pyramid_scales).to(pairs.source.device)
    sums: dict[str, float] = {}
    ref = 0.0
    for part, n in _chunks(pairs, batch_size):
        _, terms, _ = mapping_step_losses(mapping, r, part, config, pyramid)
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v * n
        ref += float((render_pairs(r, part)["reconstruction"] - part.driving).abs().mean()) * n
    r.train(was[0])
    mapping.train(was[1])
    out = {k: v / len(pairs) for k, v in sums.items()}
    return MappingMetrics(reference_image_l1=ref / len(pairs), **out)


@torch.no_grad()
def render_pairs(r: Renderer, pairs: FramePairs, mapping: MappingNet | None = None) -> dict[str, torch.Tensor]:
    """Pictures for a batch of pairs (modules must be in eval mode): ``source``, ``driving``, ``reconstruction``
    (face-vid2vid driven by the HEEstimator on the driving frame) and, with a mapping, ``mapped`` (driven by the
    MappingNet from the coefficient windows, as at inference). All [B, 3, S, S] in [0, 1]."""
    _check_size(pairs, r.image_size)
    kp_c = r.kp_detector(pairs.source)
    feature = r.generator.encode_source(pairs.source)
    kp_s = keypoint_transformation(kp_c, r.he_estimator(pairs.source))
    kp_d = keypoint_transformation(kp_c, r.he_estimator(pairs.driving))
    out = {"source": pairs.source, "driving": pairs.driving,
           "reconstruction": r.generator.render(feature, kp_source=kp_s, kp_driving=kp_d)["prediction"]}
    if mapping is not None:
        ms = keypoint_transformation(kp_c, mapping(pairs.source_window))
        md = keypoint_transformation(kp_c, mapping(pairs.driving_window))
        out["mapped"] = r.generator.render(feature, kp_source=ms, kp_driving=md)["prediction"]
    return out


# ---------------------------------------------------------------------------------------------
# The loops
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceVid2VidRun:
    """A finished (or stopped) stage 1 run: the renderer (eval mode), its log, the run folder."""

    renderer: Renderer
    history: TrainHistory
    out_dir: Path
    config: FaceVid2VidTrainConfig
    step: int
    checkpoint: Path | None  # the official-layout folder (= out_dir) when the run finished, else None


@dataclass
class MappingRun:
    """A finished (or stopped) stage 2 run: the MappingNet (eval mode), the frozen renderer, the log."""

    mapping: MappingNet
    renderer: Renderer
    history: TrainHistory
    out_dir: Path
    config: MappingTrainConfig
    step: int
    checkpoint: Path | None


def _prune(out_dir: Path, stem: str, keep: int) -> None:
    for _, old in list_checkpoints(out_dir, stem)[:-keep]:
        old.unlink()


def _log_metrics(logger: CSVLogger, step: int, metrics) -> None:
    logger.log(step, "heldout", {k: v for k, v in vars(metrics).items() if not math.isnan(v)})


def train_facevid2vid(train: FaceRenderClips, heldout: FaceRenderClips | None = None,
                      config: FaceVid2VidTrainConfig | None = None, out_dir: str | os.PathLike = "runs/facevid2vid",
                      *, init: Renderer | str | os.PathLike | None = None, resume: bool = True,
                      stop_after: int | None = None) -> FaceVid2VidRun:
    """Stage 1: train KPDetector + HEEstimator + generator self-supervised on ``train``; resumable.

    out_dir receives ``log.csv``, ``checkpoints/facevid2vid_<step>-model.pth`` (the last ``keep_checkpoints``)
    and, when the run reaches ``config.steps``, the official-layout files (:func:`save_renderer`).
    init: a starting Renderer or checkpoint folder (default: fresh weights seeded with ``config.seed``).
    resume: continue from the newest checkpoint in ``out_dir``. stop_after: stop after this many steps without
    the final save (simulates an interrupted run).
    """
    config = config or FaceVid2VidTrainConfig()
    if train.image_size != config.image_size:
        raise ValueError(f"the clips are {train.image_size} px, config.image_size is {config.image_size}")
    if heldout is not None and heldout.image_size != config.image_size:
        raise ValueError(f"the held-out clips are {heldout.image_size} px, config.image_size is {config.image_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)

    r = Renderer.build(config)
    if isinstance(init, Renderer):
        for name, m in r.modules().items():
            m.load_state_dict(init.modules()[name].state_dict())
    elif init is not None:
        src = load_renderer(init)
        for name, m in r.modules().items():
            m.load_state_dict(src.modules()[name].state_dict())
    device = torch.device(config.device)
    r.to(device).train()
    opt = torch.optim.Adam(list(r.parameters()), lr=config.lr, betas=tuple(config.adam_betas))
    pyramid = ImagePyramid(config.pyramid_scales).to(device)

    start = 0
    ckpt = latest_checkpoint(out_dir, STEM_FACEVID2VID) if resume else None
    if ckpt is not None:
        start = int(restore_training_state(ckpt, r.modules(), {"main": opt})["step"])
    logger = CSVLogger(out_dir, resume_step=start if ckpt is not None else None)
    eval_pairs = heldout.fixed_pairs(config.eval_pairs, config.seed + 1).to(device) if heldout is not None else None

    def heldout_eval(step: int):
        if eval_pairs is not None:
            _log_metrics(logger, step, evaluate_facevid2vid(r, eval_pairs, config, seed=config.seed + 2,
                                                            batch_size=max(config.batch_size, 1)))

    def save_checkpoint(step: int):
        save_training_checkpoint(checkpoint_path(out_dir, STEM_FACEVID2VID, step), r.modules(), {"main": opt}, step,
                                 config, extra={"image_size": config.image_size})
        _prune(out_dir, STEM_FACEVID2VID, config.keep_checkpoints)

    if start == 0:
        heldout_eval(0)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    for step in progress(range(start, end), config.progress, desc="face-vid2vid", initial=start, total=config.steps):
        batch = train.sample(config.batch_size, step_rng(config.seed, step)).to(device)
        loss, terms, _ = facevid2vid_step_losses(r, batch, config, pyramid, step_generator(config.seed, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        logger.log(done, "train", terms)
        if done % config.eval_every == 0 or done == config.steps:
            heldout_eval(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save_checkpoint(done)
    logger.close()
    final = None
    if end == config.steps:
        final = save_renderer(out_dir, r, stage="facevid2vid", steps=config.steps)
        save_checkpoint(config.steps)
    r.eval()
    return FaceVid2VidRun(renderer=r, history=logger.history, out_dir=out_dir, config=config, step=end,
                          checkpoint=final)


def train_mapping(train: FaceRenderClips, heldout: FaceRenderClips | None, renderer: Renderer | str | os.PathLike,
                  config: MappingTrainConfig | None = None, out_dir: str | os.PathLike = "runs/mapping", *,
                  init: MappingNet | str | os.PathLike | None = None, resume: bool = True,
                  stop_after: int | None = None) -> MappingRun:
    """Stage 2: train the MappingNet with the face-vid2vid networks of ``renderer`` frozen; resumable.

    renderer: a Renderer (it is frozen in place: eval mode, no weight gradients) or a checkpoint folder (e.g. a
    finished stage 1 run). out_dir receives ``log.csv``, ``checkpoints/mapping_<step>-model.pth`` and at the
    end a complete renderer checkpoint folder (:func:`save_renderer` with the MappingNet).
    init: a starting MappingNet or checkpoint folder / file (default: fresh, seeded with ``config.seed``).
    """
    config = config or MappingTrainConfig()
    r = renderer if isinstance(renderer, Renderer) else load_renderer(renderer)
    r.freeze()
    for name, clips in (("train", train), ("held-out", heldout)):
        if clips is None:
            continue
        if clips.image_size != r.image_size:
            raise ValueError(f"the {name} clips are {clips.image_size} px, the renderer was trained at {r.image_size}")
        if clips.coeff_channels != config.mapping.coeff_nc:
            raise ValueError(f"the {name} clips have {clips.coeff_channels} coefficient channels, the MappingNet "
                             f"expects {config.mapping.coeff_nc}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)

    torch.manual_seed(config.seed)
    mapping = MappingNet(config.mapping)
    if isinstance(init, MappingNet):
        mapping.load_state_dict(init.state_dict())
    elif init is not None:
        load_official(mapping, config.network, init)
    device = torch.device(config.device)
    r.to(device)
    mapping.to(device).train()
    opt = torch.optim.Adam(mapping.parameters(), lr=config.lr, betas=tuple(config.adam_betas))
    pyramid = ImagePyramid(config.pyramid_scales).to(device)

    start = 0
    ckpt = latest_checkpoint(out_dir, STEM_MAPPING) if resume else None
    if ckpt is not None:
        start = int(restore_training_state(ckpt, {config.network: mapping}, {"main": opt})["step"])
    logger = CSVLogger(out_dir, resume_step=start if ckpt is not None else None)
    eval_pairs = (heldout.fixed_pairs(config.eval_pairs, config.seed + 1, config.radius).to(device)
                  if heldout is not None else None)

    def heldout_eval(step: int):
        if eval_pairs is not None:
            _log_metrics(logger, step, evaluate_mapping(mapping, r, eval_pairs, config,
                                                        batch_size=max(config.batch_size, 1)))

    def save_checkpoint(step: int):
        save_training_checkpoint(checkpoint_path(out_dir, STEM_MAPPING, step), {config.network: mapping},
                                 {"main": opt}, step, config)
        _prune(out_dir, STEM_MAPPING, config.keep_checkpoints)

    if start == 0:
        heldout_eval(0)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    for step in progress(range(start, end), config.progress, desc="MappingNet", initial=start, total=config.steps):
        batch = train.sample(config.batch_size, step_rng(config.seed, step), config.radius).to(device)
        loss, terms, _ = mapping_step_losses(mapping, r, batch, config, pyramid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        logger.log(done, "train", terms)
        if done % config.eval_every == 0 or done == config.steps:
            heldout_eval(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save_checkpoint(done)
    logger.close()
    final = None
    if end == config.steps:
        final = save_renderer(out_dir, r, mapping, stage="mapping", steps=config.steps)
        save_checkpoint(config.steps)
    mapping.eval()
    return MappingRun(mapping=mapping, renderer=r, history=logger.history, out_dir=out_dir, config=config, step=end,
                      checkpoint=final)
