"""Stage: face-vid2vid, self-supervised (paper Sec. 3.3 "As for training", FaceRender stage 1).

Two frames of the same clip (``data.frames``), a source and a driving one:

    x_c = KPDetector(source)                                  canonical keypoints [B, 15, 3]
    he_s, he_d = HEEstimator(source), HEEstimator(driving)    pose bins, t, expression deltas
    x_s, x_d = R_s x_c + t_s + delta_s, R_d x_c + t_d + delta_d          (steps.keypoints)
    frame = Generator(source, x_s, x_d)                       reconstructs the driving frame
    L = perceptual(frame, driving) + 10 equivariance + 10 keypoint prior + 20 head pose + 5 expression

Losses: ``facerender_losses``. Hyper-parameters default to the paper / face-vid2vid (Adam lr 2e-4, betas
(0.5, 0.999), batch 32, 256 px, official network sizes: the ``paper`` preset); ``.cpu()`` is a genuinely small
face-vid2vid (the ``tiny`` network configs, 64 px frames) that learns visibly in a minute or two on 2 cores;
``.tiny()`` the test size. Device, mixed precision and processes are the loop's (``train.loop``; ``device``
None, the default: a GPU when there is one).

The networks travel as :class:`FaceVid2VidNets`, an ``nn.ModuleDict`` keyed by the official network names. At the
end the run folder is a checkpoint folder in the official layout (``registry.save_networks``):
``SadTalker_V0.0.2_256.safetensors`` (kp_extractor + generator), ``facevid2vid_00189-model.pth.tar``
(kp_extractor + generator + he_estimator), and ``sadtalker_lab.json`` (the network configs and
``facerender.image_size``, the frame size the renderer was trained at).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ..coeffs import FULL_DIM
from ..data.frames import FaceRenderClips, FramePairs, split_clips
from ..models.facevid2vid import GeneratorConfig, KPDetectorConfig
from ..models.facevid2vid.head_pose import HEEstimatorConfig
from ..steps.keypoints import keypoint_transformation, pose_degrees
from ..official import OFFICIAL_NETWORKS
from ..official.io import load_official, save_official_pth
from ..official.registry import CONFIG_FILE, build_network, read_configs, save_networks
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, run, step_generator, step_rng
from .facerender_losses import (
    PYRAMID_SCALES,
    ImagePyramid,
    RandomWarp,
    coeff_pose_degrees,
    equivariance_loss,
    expression_prior_loss,
    headpose_loss,
    keypoint_prior_loss,
    pyramid_l1,
)

__all__ = [
    "FaceVid2VidTrainConfig",
    "FaceVid2VidNets",
    "build_facevid2vid",
    "save_renderer",
    "load_renderer",
    "facevid2vid_step_losses",
    "FaceVid2VidMetrics",
    "evaluate_facevid2vid",
    "render_pairs",
    "FaceVid2VidRun",
    "FaceVid2VidStage",
    "train_facevid2vid",
    "cli_stage",
]

FACEVID2VID_NETWORKS = ("kp_extractor", "generator", "he_estimator")  # official names, in the .pth.tar
STEM_FACEVID2VID = "facevid2vid"  # checkpoints/facevid2vid_<step>-model.pth (the official file's stem)
LR_FACERENDER = 2e-4  # paper Sec. 4.1: "ExpNet, PoseVAE, and FaceRender are trained with a learning rate of ..., 2e-4"
FV2V_ADAM_BETAS = (0.5, 0.999)  # face-vid2vid train.py: every Adam uses betas (0.5, 0.999)
FV2V_BATCH = 32  # face-vid2vid config/vox-256.yaml train_params.batch_size
FV2V_PERCEPTUAL = (10.0, 10.0, 10.0, 10.0)  # vox-256.yaml perceptual weight 10 (per level here, see losses)
LAMBDA_EQUIVARIANCE = 10.0  # vox-256.yaml loss_weights.equivariance_value
LAMBDA_KEYPOINT_PRIOR = 10.0  # loss_weights.keypoint
LAMBDA_HEADPOSE = 20.0  # loss_weights.headpose
LAMBDA_EXPRESSION = 5.0  # loss_weights.expression


@dataclass
class FaceVid2VidTrainConfig(TrainConfig):
    """Stage 1 settings. Defaults = the GPU preset: official network sizes, 256 px, face-vid2vid's loss weights.

    image_size: frame side in px (a multiple of 32 for the KPDetector / HEEstimator).
    kp_detector / generator / he_estimator: the network configs (official defaults; ``.cpu()``: ``tiny``).
    perceptual_weights: one weight per pyramid scale (``pyramid_scales``) of the pixel pyramid L1.
    lambda_*: the other face-vid2vid terms (0 switches a term off). sigma_affine / sigma_tps / points_tps: the
    random warp of the equivariance term (vox-256.yaml transform_params). eval_pairs: held-out (source,
    driving) pairs scored every ``eval_every`` steps.
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

    def __post_init__(self):
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (KPDetector / HEEstimator), got {self.image_size}")
        if len(self.perceptual_weights) != len(self.pyramid_scales):
            raise ValueError(f"{len(self.perceptual_weights)} perceptual weights for scales {self.pyramid_scales}")
        if self.kp_detector.num_kp != self.generator.num_kp or self.generator.num_kp != self.he_estimator.num_kp:
            raise ValueError("kp_detector, generator and he_estimator must agree on num_kp")

    @classmethod
    def cpu(cls, **changes) -> "FaceVid2VidTrainConfig":
        """Small CPU preset (notebooks, CI): the ``tiny`` networks at 64 px, 150 steps of 4 pairs, lr 1e-3 (5x the
        paper's 2e-4 so that a minute shows), held-out loss every 25 steps, checkpoints every 50; one torch
        thread (two ran several times slower on 2 cores shared with other work)."""
        base = dict(image_size=64, kp_detector=KPDetectorConfig.tiny(), generator=GeneratorConfig.tiny(),
                    he_estimator=HEEstimatorConfig.tiny(), steps=150, batch_size=4, lr=1e-3, eval_every=25,
                    checkpoint_every=50, eval_pairs=16, num_threads=1)
        return cls(**{**base, **changes})

    @classmethod
    def tiny(cls, **changes) -> "FaceVid2VidTrainConfig":
        """Test preset: the CPU preset at 32 px, 4 steps of 2 pairs, held-out loss and checkpoints every 2 steps
        on 4 pairs, no tqdm bar."""
        base = dict(image_size=32, steps=4, batch_size=2, checkpoint_every=2, eval_every=2, eval_pairs=4,
                    progress=False)
        return cls.cpu(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# The networks, saving and loading
# ---------------------------------------------------------------------------------------------
class FaceVid2VidNets(nn.ModuleDict):
    """face-vid2vid's three networks by official name (``kp_extractor``, ``generator``, ``he_estimator``; also
    reachable as attributes) plus ``image_size``, the frame side in px they were trained at."""

    def __init__(self, kp_extractor: nn.Module, generator: nn.Module, he_estimator: nn.Module, image_size: int):
        super().__init__({"kp_extractor": kp_extractor, "generator": generator, "he_estimator": he_estimator})
        self.image_size = int(image_size)


def build_facevid2vid(config: FaceVid2VidTrainConfig, seed: int | None = None) -> FaceVid2VidNets:
    """Fresh networks of ``config`` (torch seeded with ``seed``, default ``config.seed``), train mode."""
    torch.manual_seed(config.seed if seed is None else seed)
    configs = (config.kp_detector, config.generator, config.he_estimator)
    return FaceVid2VidNets(*(build_network(n, c) for n, c in zip(FACEVID2VID_NETWORKS, configs)), config.image_size)


def mapping_network(coeff_nc: int) -> str:
    """The official name of a MappingNet: mapping_crop (70 channels: exp | pose) or mapping_full (73: + crop)."""
    return "mapping_full" if coeff_nc == FULL_DIM else "mapping_crop"


def _safetensors_size(image_size: int) -> int:
    """The size in the safetensors file name: 256 up to 256 px frames, else 512 (the official two)."""
    return 256 if image_size <= 256 else 512


def save_renderer(folder: str | os.PathLike, nets: FaceVid2VidNets, mapping: nn.Module | None = None,
                  **info) -> Path:
    """Write the official layout into ``folder`` (see the module docstring; with a MappingNet also
    ``mapping_00229-model.pth.tar``); ``info`` goes into ``sadtalker_lab.json`` under ``facerender`` together
    with ``image_size``."""
    folder = Path(folder)
    saved = {n: nets[n] for n in ("kp_extractor", "generator")}
    configs = {n: m.config for n, m in nets.items()}
    if mapping is not None:
        name = mapping_network(mapping.config.coeff_nc)
        saved[name] = mapping
        configs[name] = mapping.config
    save_networks(folder, saved, configs, size=_safetensors_size(nets.image_size),
                  facerender={"image_size": int(nets.image_size), **info})
    # the complete old-version file too (save_networks writes only the networks it was given there)
    save_official_pth(dict(nets.items()), folder / OFFICIAL_NETWORKS["generator"].pth_file)
    return folder


def _image_size_of(folder: Path, default: int = 256) -> int:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return default
    return int(json.loads(path.read_text()).get("facerender", {}).get("image_size", default))


def load_renderer(folder: str | os.PathLike) -> FaceVid2VidNets:
    """The face-vid2vid networks of a checkpoint folder (trained here, or official), in eval mode.

    Configs come from ``sadtalker_lab.json`` (``registry.read_configs``); without one the official sizes.
    kp_extractor / generator: the safetensors when present, else the .pth.tar; he_estimator: the .pth.tar.
    """
    folder = Path(folder)
    configs = read_configs(folder)
    size = _image_size_of(folder)
    nets = [load_official(build_network(n, configs.get(n)), n, folder, size=_safetensors_size(size))
            for n in FACEVID2VID_NETWORKS]
    return FaceVid2VidNets(*nets, size).eval()


# ---------------------------------------------------------------------------------------------
# One step's losses, held-out numbers, pictures
# ---------------------------------------------------------------------------------------------
def check_size(batch: FramePairs, image_size: int) -> None:
    if tuple(batch.source.shape[2:]) != (image_size, image_size):
        raise ValueError(f"frames are {tuple(batch.source.shape[2:])}, the renderer works at {image_size} px: "
                         f"build the clips with image_size={image_size}")


def facevid2vid_step_losses(r, batch: FramePairs, config: FaceVid2VidTrainConfig, pyramid: ImagePyramid,
                            warp_generator: torch.Generator | None = None, *, warp: RandomWarp | None = None
                            ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Stage 1 on one batch -> (total loss, {term: unweighted value}, generated driving frames [B, 3, S, S]).

    r: :class:`FaceVid2VidNets` (or anything with its three networks as attributes and ``image_size``, e.g. their
    DDP-wrapped versions). The equivariance warp is ``warp``, else drawn with ``warp_generator``.
    """
    check_size(batch, r.image_size)
    c = config
    b = len(batch)
    kp_c = r.kp_extractor(batch.source)  # x_c [B, K, 3]
    # One HEEstimator call on [source | driving | warped driving]: BatchNorm then normalises the three with the
    # same batch statistics. (face-vid2vid makes three calls; with small batches of one identity, separate
    # statistics turn tiny differences between the frames into large keypoint differences.)
    images = [batch.source, batch.driving]
    if not c.lambda_equivariance:
        warp = None
    elif warp is None:
        warp = RandomWarp(b, c.sigma_affine, c.sigma_tps, c.points_tps, generator=warp_generator)
    if warp is not None:
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


def chunks(pairs: FramePairs, size: int):
    """(part, len(part)) of ``pairs`` in batches of ``size``."""
    for s in range(0, len(pairs), size):
        part = pairs[slice(s, s + size)]
        yield part, len(part)


@torch.no_grad()
def evaluate_facevid2vid(r: FaceVid2VidNets, pairs: FramePairs, config: FaceVid2VidTrainConfig, seed: int = 1234,
                         batch_size: int = 16) -> FaceVid2VidMetrics:
    """Stage 1 losses on fixed pairs in eval mode (BatchNorm running statistics); deterministic for ``seed``."""
    was = r.training
    r.eval()
    pyramid = ImagePyramid(config.pyramid_scales).to(pairs.source.device)
    sums: dict[str, float] = {}
    for k, (part, n) in enumerate(chunks(pairs, batch_size)):
        _, terms, _ = facevid2vid_step_losses(r, part, config, pyramid, step_generator(seed, k))
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v * n
    r.train(was)
    return FaceVid2VidMetrics(**{k: v / len(pairs) for k, v in sums.items()})


@torch.no_grad()
def render_pairs(r: FaceVid2VidNets, pairs: FramePairs, mapping: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Pictures for a batch of pairs (modules must be in eval mode): ``source``, ``driving``, ``reconstruction``
    (face-vid2vid driven by the HEEstimator on the driving frame) and, with a mapping, ``mapped`` (driven by the
    MappingNet from the coefficient windows, as at inference). All [B, 3, S, S] in [0, 1]."""
    check_size(pairs, r.image_size)
    kp_c = r.kp_extractor(pairs.source)
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


def heldout_row(metrics) -> dict[str, float]:
    """A metrics dataclass -> the logged held-out row (terms that were switched off, NaN, are left out)."""
    return {k: v for k, v in vars(metrics).items() if not math.isnan(v)}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceVid2VidRun:
    """A finished (or stopped) stage 1 run: the networks (eval mode), its log, the run folder."""

    renderer: FaceVid2VidNets
    history: TrainHistory
    out_dir: Path
    config: FaceVid2VidTrainConfig
    step: int
    checkpoint: Path | None  # the official-layout folder (= out_dir) when the run finished, else None


class FaceVid2VidStage(Stage):
    """face-vid2vid as a :class:`~sadtalker_lib.train.loop.Stage` (arguments as :func:`train_facevid2vid`)."""

    name, stem = "face-vid2vid", STEM_FACEVID2VID

    def __init__(self, train: FaceRenderClips, heldout: FaceRenderClips | None = None,
                 config: FaceVid2VidTrainConfig | None = None, *,
                 init: FaceVid2VidNets | str | os.PathLike | None = None):
        self.config = config = config or FaceVid2VidTrainConfig()
        for what, clips in (("clips", train), ("held-out clips", heldout)):
            if clips is not None and clips.image_size != config.image_size:
                raise ValueError(f"the {what} are {clips.image_size} px, config.image_size is {config.image_size}")
        self.train, self.heldout, self.init = train, heldout, init

    def build(self, ctx: RunContext) -> None:
        config = self.config
        r = build_facevid2vid(config)
        if self.init is not None:
            init = self.init if isinstance(self.init, FaceVid2VidNets) else load_renderer(self.init)
            r.load_state_dict(init.state_dict())
        r.train()
        self.nets = r
        self.modules = dict(r.items())
        self.train_modules = dict(r.items())
        self.optimizers = {"main": torch.optim.Adam(list(r.parameters()), lr=config.lr,
                                                    betas=tuple(config.adam_betas))}

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        self.pyramid = ImagePyramid(self.config.pyramid_scales).to(ctx.device)
        self.eval_pairs = None
        if self.heldout is not None:
            self.eval_pairs = self.heldout.fixed_pairs(self.config.eval_pairs, self.config.seed + 1).to(ctx.device)

    def extra_state(self) -> dict:
        return {"image_size": self.config.image_size}

    def batch_indices(self, step: int) -> np.ndarray:
        return np.arange(self.config.batch_size)  # positions in the step's global batch of pairs (train_step)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        c = self.config
        pairs = self.train.sample(ctx.global_size, step_rng(c.seed, ctx.step))  # the global batch of pairs
        warp = None
        if c.lambda_equivariance:  # drawn for the global batch too, then this process's rows
            warp = RandomWarp(ctx.global_size, c.sigma_affine, c.sigma_tps, c.points_tps,
                              generator=ctx.generator()).select(ctx.part)
        nets = SimpleNamespace(image_size=c.image_size, **{n: ctx.module(n) for n in FACEVID2VID_NETWORKS})
        loss, terms, _ = facevid2vid_step_losses(nets, pairs[ctx.part].to(ctx.device), c, self.pyramid, warp=warp)
        ctx.update("main", loss)
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.eval_pairs is None:
            return None
        return heldout_row(evaluate_facevid2vid(self.nets, self.eval_pairs, self.config, seed=self.config.seed + 2,
                                                batch_size=max(self.config.batch_size, 1)))

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_renderer(out_dir, self.nets, stage="facevid2vid", steps=self.config.steps)


def train_facevid2vid(train: FaceRenderClips, heldout: FaceRenderClips | None = None,
                      config: FaceVid2VidTrainConfig | None = None, out_dir: str | os.PathLike = "runs/facevid2vid",
                      *, init: FaceVid2VidNets | str | os.PathLike | None = None, resume: bool = True,
                      stop_after: int | None = None) -> FaceVid2VidRun:
    """Stage 1: train KPDetector + HEEstimator + generator self-supervised on ``train``; resumable (``loop.run`` on
    :class:`FaceVid2VidStage`).

    out_dir receives ``log.csv``, ``checkpoints/facevid2vid_<step>-model.pth`` (the last ``keep_checkpoints``)
    and, when the run reaches ``config.steps``, the official-layout files (:func:`save_renderer`).
    init: starting networks or a checkpoint folder (default: fresh weights seeded with ``config.seed``).
    resume: continue from the newest checkpoint in ``out_dir``. stop_after: stop after this many steps without
    the final save (simulates an interrupted run).
    """
    stage = FaceVid2VidStage(train, heldout, config, init=init)
    res = run(stage, out_dir, resume=resume, stop_after=stop_after)
    return FaceVid2VidRun(renderer=stage.nets.eval(), history=res.history, out_dir=Path(out_dir),
                          config=stage.config, step=res.step, checkpoint=res.final)


def cli_stage(corpus: Path, preset: str, heldout_clips: int = 1, **overrides) -> FaceVid2VidStage:
    """``sadtalker-lab train facevid2vid``: frames of a corpus folder (the last ``heldout_clips`` clips held out)."""
    config = getattr(FaceVid2VidTrainConfig, preset)(**overrides)
    train_ids, held_ids = split_clips(corpus, heldout_clips) if heldout_clips else (None, [])
    train = FaceRenderClips.from_corpus(corpus, train_ids, image_size=config.image_size)
    held = FaceRenderClips.from_corpus(corpus, held_ids, image_size=config.image_size) if held_ids else None
    return FaceVid2VidStage(train, held, config)
