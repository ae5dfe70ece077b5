"""Stage: the MappingNet with face-vid2vid frozen (paper Sec. 3.3 "As for training", supp. B.3 Eq. 14).

The driving frame's coefficient window (radius 13, ``steps.windows.frame_windows``) and the source's constant window
(``steps.windows.source_window``, as at inference) go through the MappingNet instead of the HEEstimator
(data: ``data.frames``):

    K'_s, K'_d = transform(x_c, MappingNet(source window)), transform(x_c, MappingNet(driving window))
    K_s, K_d   = the same from the frozen HEEstimator on the real frames ("the motion generator of face-vid2vid";
                 face-vid2vid's transformation, all of t; the MappingNet's keypoints keep only t_y, as at inference)
    L = 20 * Eq. 14 (mean of the source and driving terms) + perceptual(Generator(source, K'_s, K'_d), driving)

Defaults = the ``paper`` preset (official MappingNet, Adam lr 2e-4, betas (0.5, 0.999), batch 32); ``.cpu()`` the
``tiny`` MappingNet with a landmark-motion term beside Eq. 14 (not in the paper); ``.tiny()`` the test size. The
MappingNet drives as many keypoints as the frozen renderer has. Held out (:func:`cli_stage`): the renderer's split
(``data.frames.split_frames``); ``heldout.json`` (:func:`mapping_heldout_report`) gives motion transfer, face /
image L1, face PSNR and keypoint L1, each beside copying the source and beside the renderer driven by its own
keypoints. At the end the run folder is a complete renderer checkpoint folder (``facevid2vid.save_renderer`` with
the MappingNet: ``mapping_00229-model.pth.tar`` besides the face-vid2vid files).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..coeffs import MOTION_DIM
from ..data.frames import FaceRenderClips, FramePairs, check_pair_sampling, split_frames
from ..models.mapping import MappingNet, MappingNetConfig
from ..steps.keypoints import facevid2vid_keypoints, keypoint_transformation
from ..official.io import load_official
from ..official.registry import build_network, read_configs
from ..steps.windows import SEMANTIC_RADIUS
from .heldout import HeldoutMetric, HeldoutReport
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, run, step_rng
from .facerender_losses import (PYRAMID_SCALES, ImagePyramid, anchor_landmarks, keypoint_l1, landmark_motion_loss,
                               mouth_region_l1, pyramid_l1)
from .facevid2vid import (
    FV2V_ADAM_BETAS,
    FV2V_BATCH,
    FV2V_PERCEPTUAL,
    LR_FACERENDER,
    STILL_KEYPOINTS,
    FaceVid2VidNets,
    check_size,
    chunks,
    heldout_row,
    load_renderer,
    mapping_network,
    render_heldout,
    render_pairs,
    save_renderer,
)

__all__ = [
    "MappingTrainConfig",
    "load_mapping",
    "mapping_step_losses",
    "MappingMetrics",
    "evaluate_mapping",
    "render_mapped",
    "mapping_heldout_report",
    "mapping_losses_label",
    "MappingRun",
    "MappingStage",
    "train_mapping",
    "cli_stage",
]

STEM_MAPPING = "mapping"  # checkpoints/mapping_<step>-model.pth
LAMBDA_MAPPING_KEYPOINT = 20.0  # paper supp. B.3: "The weight of L_1 [Eq. 14] is set to 20"
# not in the paper: the CPU preset's landmark-motion term (results/facerender-motion-cpu-default-corpus.md, 4d, 6)
CPU_LAMBDA_LANDMARK_MOTION = 200.0


@dataclass
class MappingTrainConfig(TrainConfig):
    """Stage 2 settings (MappingNet, face-vid2vid frozen). Defaults = the paper preset (official MappingNet).

    mapping: the MappingNet config (70 channels: ``mapping_crop``; 73: ``mapping_full``, needs crop params).
    radius: coefficient window radius (13: windows of 27 frames, as released). lambda_keypoint: Eq. 14 weight
    (20). perceptual_weights: the image terms on the generated frame (all 0: keypoints only, no rendering).
    lambda_landmark_motion: weight of an L1 between the mapped keypoints' motion (x_d - x_s)(x, y) and the motion
    of the corpus' 15 anchor landmarks (``facerender_losses.landmark_motion_loss``; not in the paper, 0 = off;
    ``CPU_LAMBDA_LANDMARK_MOTION`` in the ``cpu`` preset): a motion target that does not go through the
    HEEstimator, whose motion errs by more than the motion at the CPU preset. Needs 15 keypoints.
    lambda_mouth / motion_candidates / mouth_pairs: stage 1's mouth-region L1 and pair sampling
    (``FaceVid2VidTrainConfig``; not in the paper, off by default).
    cross_identity: held-out people's portraits and other people's driving segments per side of the cross-identity
    rows of ``heldout.json`` (``facerender_eval.cross_identity_metrics``: n x n pairs; 0 = none; project choice).
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
    heldout_pairs_per_clip: int = 8
    lambda_landmark_motion: float = 0.0
    lambda_mouth: float = 0.0
    motion_candidates: int = 1
    mouth_pairs: float = 0.0
    cross_identity: int = 3

    def __post_init__(self):
        super().__post_init__()
        if len(self.perceptual_weights) != len(self.pyramid_scales):
            raise ValueError(f"{len(self.perceptual_weights)} perceptual weights for scales {self.pyramid_scales}")
        if self.lambda_landmark_motion:
            anchor_landmarks(self.mapping.num_kp)
        check_pair_sampling(self.motion_candidates, self.mouth_pairs)
        if 2 * self.radius + 1 < self.mapping.min_window:
            raise ValueError(f"radius {self.radius} gives {2 * self.radius + 1}-frame windows; the MappingNet needs "
                             f">= {self.mapping.min_window}")

    @property
    def network(self) -> str:
        """The official network name: mapping_crop (70 channels) or mapping_full (73)."""
        return mapping_network(self.mapping.coeff_nc)

    @classmethod
    def cpu(cls, **changes) -> "MappingTrainConfig":
        """Small CPU preset: the ``tiny`` MappingNet, 300 steps of 8 pairs (~3 min on one core; 150 of 4 until
        session 19: over five renderer seeds of the main job's corpus held-out motion transfer 0.69-0.80x copy-source
        against 0.77-0.82x, results/facerender-motion-cpu-default-corpus.md section 8), lr 1e-3 (5x the paper's),
        held-out every 50 steps, checkpoints every 100; one torch thread; the landmark-motion term beside Eq. 14 (not
        in the paper: ``CPU_LAMBDA_LANDMARK_MOTION``)."""
        base = dict(mapping=MappingNetConfig.tiny(MOTION_DIM), steps=300, batch_size=8, lr=1e-3, eval_every=50,
                    checkpoint_every=100, eval_pairs=16, num_threads=1,
                    lambda_landmark_motion=CPU_LAMBDA_LANDMARK_MOTION)
        return cls(**{**base, **changes})

    @classmethod
    def tiny(cls, **changes) -> "MappingTrainConfig":
        """Test preset: the CPU preset, 4 steps of 2 pairs, held-out and checkpoints every 2 steps, no tqdm bar."""
        base = dict(steps=4, batch_size=2, checkpoint_every=2, eval_every=2, eval_pairs=4,
                    heldout_pairs_per_clip=2, progress=False)
        return cls.cpu(**{**base, **changes})


def load_mapping(folder: str | os.PathLike, network: str = "mapping_crop") -> MappingNet:
    """The MappingNet of a checkpoint folder (config from ``sadtalker_lab.json`` when present), eval mode."""
    folder = Path(folder)
    return load_official(build_network(network, read_configs(folder).get(network)), network, folder).eval()


def mapping_step_losses(mapping: MappingNet, r: FaceVid2VidNets, batch: FramePairs, config: MappingTrainConfig,
                        pyramid: ImagePyramid) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Stage 2 on one batch (``r`` frozen) -> (total loss, {term: value}, generated frames or None).

    Terms: ``keypoint_l1`` (Eq. 14, mean of the source and driving keypoints), ``keypoint_l1_driving``,
    ``perceptual`` (weighted pyramid L1), ``image_l1`` (plain pixel L1 of the generated driving frame), ``loss``.
    """
    check_size(batch, r.image_size)
    render = any(config.perceptual_weights)
    with torch.no_grad():  # face-vid2vid's own motion = the targets K_n of Eq. 14
        kp_c = r.kp_extractor(batch.source)
        target_s = facevid2vid_keypoints(kp_c, r.he_estimator(batch.source))
        target_d = facevid2vid_keypoints(kp_c, r.he_estimator(batch.driving))
        feature = r.generator.encode_source(batch.source) if render else None
    b = len(batch)
    he = mapping(torch.cat([batch.source_window, batch.driving_window]))  # one call for both, [2B, ...]
    kp_s = keypoint_transformation(kp_c, {k: v[:b] for k, v in he.items()})
    kp_d = keypoint_transformation(kp_c, {k: v[b:] for k, v in he.items()})
    l_d = keypoint_l1(kp_d, target_d)
    l_kp = 0.5 * (keypoint_l1(kp_s, target_s) + l_d)  # Eq. 14
    total = config.lambda_keypoint * l_kp
    terms = {"keypoint_l1": float(l_kp.detach()), "keypoint_l1_driving": float(l_d.detach())}
    if config.lambda_landmark_motion:
        lm_motion = landmark_motion_loss(kp_s, kp_d, batch.source_landmarks, batch.driving_landmarks)
        total = total + config.lambda_landmark_motion * lm_motion
        terms["landmark_motion"] = float(lm_motion.detach())
    pred = None
    if render:
        pred = r.generator.render(feature, kp_source=kp_s, kp_driving=kp_d)["prediction"]
        perceptual = pyramid_l1(pred, batch.driving, pyramid, config.perceptual_weights)
        total = total + perceptual
        terms["perceptual"] = float(perceptual.detach())
        terms["image_l1"] = float((pred.detach() - batch.driving).abs().mean())
        if config.lambda_mouth:
            mouth = mouth_region_l1(pred, batch.driving, batch.source_landmarks, batch.driving_landmarks)
            total = total + config.lambda_mouth * mouth
            terms["mouth_l1"] = float(mouth.detach())
    terms["loss"] = float(total.detach())
    return total, terms, pred


@dataclass
class MappingMetrics:
    """Held-out stage 2 numbers: ``keypoint_l1`` (Eq. 14), ``image_l1`` (mean |generated - driving|), and
    ``reference_image_l1``: the same image error with face-vid2vid's own keypoints (HEEstimator on the real
    frame), the floor that the MappingNet can approach; ``landmark_motion`` (with ``lambda_landmark_motion``):
    |mapped keypoint motion - anchor landmark motion| (x, y, normalised coordinates). Copying the source on the
    same pairs: ``copy_source_image_l1`` (|source - driving|) and ``copy_source_keypoint_l1_driving`` (the source's
    HEEstimator keypoints as the driving frame's: the baseline of ``keypoint_l1_driving``)."""

    loss: float
    keypoint_l1: float
    keypoint_l1_driving: float
    image_l1: float = float("nan")
    perceptual: float = float("nan")
    reference_image_l1: float = float("nan")
    landmark_motion: float = float("nan")
    mouth_l1: float = float("nan")
    copy_source_image_l1: float = float("nan")
    copy_source_keypoint_l1_driving: float = float("nan")


@torch.no_grad()
def evaluate_mapping(mapping: MappingNet, r: FaceVid2VidNets, pairs: FramePairs, config: MappingTrainConfig,
                     batch_size: int = 16) -> MappingMetrics:
    """Stage 2 numbers on fixed pairs (renderer in eval mode); adds ``reference_image_l1`` and the copy-source
    baselines."""
    was = r.training, mapping.training
    r.eval()
    mapping.eval()
    pyramid = ImagePyramid(config.pyramid_scales).to(pairs.source.device)
    sums: dict[str, float] = {}
    for part, n in chunks(pairs, batch_size):
        _, terms, _ = mapping_step_losses(mapping, r, part, config, pyramid)
        terms["reference_image_l1"] = float((render_pairs(r, part)["reconstruction"] - part.driving).abs().mean())
        terms["copy_source_image_l1"] = float((part.source - part.driving).abs().mean())
        terms["copy_source_keypoint_l1_driving"] = _keypoint_l1(mapping, r, part)[1]
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v * n
    r.train(was[0])
    mapping.train(was[1])
    return MappingMetrics(**{k: v / len(pairs) for k, v in sums.items()})


@torch.no_grad()
def render_mapped(r: FaceVid2VidNets, mapping: MappingNet, pairs: FramePairs, batch_size: int = 16, *,
                  still: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Driving frames generated from the coefficient windows alone, as at inference (MappingNet keypoints for the
    source and the driving frame; modules in eval mode): frames [N, 3, S, S] and the identity-motion mask mass
    [N]. still: the source's keypoints drive too (no motion; the ``still_keypoints`` baseline)."""
    was = r.training, mapping.training
    r.eval()
    mapping.eval()
    frames, mass = [], []
    device = next(r.parameters()).device
    for part, _ in chunks(pairs, batch_size):
        part = part.to(device)
        kp_c = r.kp_extractor(part.source)
        kp_s = keypoint_transformation(kp_c, mapping(part.source_window))
        kp_d = kp_s if still else keypoint_transformation(kp_c, mapping(part.driving_window))
        out = r.generator(part.source, kp_source=kp_s, kp_driving=kp_d)
        frames.append(out["prediction"])
        mass.append(out["mask"][:, 0].flatten(1).mean(1))
    r.train(was[0])
    mapping.train(was[1])
    return torch.cat(frames), torch.cat(mass)


@torch.no_grad()
def _keypoint_l1(mapping: MappingNet, r: FaceVid2VidNets, pairs: FramePairs) -> tuple[float, float]:
    """(|K'_d - K_d|, |K_s - K_d|): Eq. 14's driving term and the same with the source's keypoints (copy_source)."""
    pairs = pairs.to(next(r.parameters()).device)
    kp_c = r.kp_extractor(pairs.source)
    k_s = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.source))
    k_d = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.driving))
    k_m = keypoint_transformation(kp_c, mapping(pairs.driving_window))
    return float(keypoint_l1(k_m, k_d)), float(keypoint_l1(k_s, k_d))


def mapping_losses_label(config: MappingTrainConfig) -> str:
    """What the MappingNet was trained against, for reports (``heldout.json``'s ``split.mapping_losses``): Eq. 14
    and the image terms, and the terms that are not in the paper with their weights."""
    parts = [f"Eq. 14 vs the frozen HEEstimator's keypoints (weight {config.lambda_keypoint:g})"]
    if any(config.perceptual_weights):
        parts.append("image terms on the rendered frame")
    if config.lambda_landmark_motion:
        parts.append(f"not in the paper: keypoint motion vs the corpus' anchor landmarks' motion "
                     f"(weight {config.lambda_landmark_motion:g})")
    if config.lambda_mouth:
        parts.append(f"not in the paper: mouth-region L1 (weight {config.lambda_mouth:g})")
    if config.mouth_pairs:
        parts.append(f"not in the paper: {config.mouth_pairs:.0%} of the pairs biased to mouth motion")
    return "; ".join(parts)


def mapping_heldout_report(mapping: MappingNet, r: FaceVid2VidNets, sets: dict[str, FaceRenderClips],
                           per_clip: int = 8, split: dict | None = None, log=print,
                           cross_identity: int = 0) -> HeldoutReport:
    """The MappingNet-driven renderer on held-out segments (``sets``: name -> clips; per clip its first frame drives
    ``per_clip`` later frames, as ``metrics.motion_transfer.renderer_heldout_metrics``) beside ``copy_source``
    (the source frame / the source's keypoints as the answer), the same renderer driven by its own HEEstimator on
    the real driving frame (``heestimator_keypoints``: what the MappingNet approaches) and given no motion
    (``still_keypoints``: the MappingNet's source keypoints drive too; what the renderer scores without the
    driving frame).

    Metrics (overall and per set, ``<set>/...``): ``motion_transfer_error_px``, ``face_l1``, ``face_psnr_db``,
    ``image_l1``, ``identity_motion_mass`` (``metrics.motion_transfer``) and ``keypoint_l1`` (Eq. 14's driving
    term vs the frozen HEEstimator's keypoints; copy_source: the source frame's keypoints). With ``cross_identity``
    = n and both ``heldout_people`` and ``later_time`` sets (``split_frames``' names), the cross-identity rows of
    ``facerender_eval.cross_identity_metrics`` too: n held-out people's portraits x n training people's later
    segments.
    """
    from ..metrics.motion_transfer import renderer_heldout_metrics
    from .facerender_eval import cross_identity_metrics

    was = r.training, mapping.training
    r.eval()
    mapping.eval()
    others = {"heestimator_keypoints": lambda p: render_heldout(r, p),
              STILL_KEYPOINTS: lambda p: render_mapped(r, mapping, p, still=True)}
    metrics = renderer_heldout_metrics(lambda p: render_mapped(r, mapping, p), sets, per_clip, log=log,
                                       baselines=others)
    label = "Eq. 14 driving term (keypoint units) vs the frozen HEEstimator's keypoints of the real frame"
    total = total_copy = count = 0.0
    for name, clips in sets.items():
        pairs = clips.first_frame_pairs(per_clip)
        kp, copy = _keypoint_l1(mapping, r, pairs)
        metrics[f"{name}/keypoint_l1"] = HeldoutMetric(kp, {"copy_source": copy}, True, label)
        total, total_copy, count = total + kp * len(pairs), total_copy + copy * len(pairs), count + len(pairs)
    if count:
        metrics = {"keypoint_l1": HeldoutMetric(total / count, {"copy_source": total_copy / count}, True, label),
                   **metrics}
    if cross_identity and {"heldout_people", "later_time"} <= sets.keys():
        metrics.update(cross_identity_metrics(r, mapping, sets["heldout_people"], sets["later_time"], cross_identity,
                                              log=log))
    r.train(was[0])
    mapping.train(was[1])
    return HeldoutReport("mapping", metrics, dict(split or {}))


@dataclass
class MappingRun:
    """A finished (or stopped) stage 2 run: the MappingNet (eval mode), the frozen renderer, the log."""

    mapping: MappingNet
    renderer: FaceVid2VidNets
    history: TrainHistory
    out_dir: Path
    config: MappingTrainConfig
    step: int
    checkpoint: Path | None


class MappingStage(Stage):
    """The MappingNet as a :class:`~sadtalker_lib.train.loop.Stage` (arguments as :func:`train_mapping`)."""

    name, stem = "MappingNet", STEM_MAPPING

    def __init__(self, train: FaceRenderClips, heldout: FaceRenderClips | None,
                 renderer: FaceVid2VidNets | str | os.PathLike, config: MappingTrainConfig | None = None, *,
                 init: MappingNet | str | os.PathLike | None = None,
                 heldout_sets: dict[str, FaceRenderClips] | None = None, split: dict | None = None):
        self.config = config = config or MappingTrainConfig()
        r = renderer if isinstance(renderer, FaceVid2VidNets) else load_renderer(renderer)
        r.eval().requires_grad_(False)  # frozen: eval mode, no weight gradients
        num_kp = r.kp_extractor.config.num_kp
        if config.mapping.num_kp != num_kp:  # the MappingNet drives the renderer's keypoints, however many
            self.config = config = replace(config, mapping=replace(config.mapping, num_kp=num_kp))
        self.heldout_sets = dict(heldout_sets) if heldout_sets else ({"heldout": heldout} if heldout else {})
        self.split = dict(split) if split else {"train": list(train.ids),
                                                 **{k: list(v.ids) for k, v in self.heldout_sets.items()}}
        for name, clips in (("train", train), ("held-out", heldout), *self.heldout_sets.items()):
            if clips is None:
                continue
            if clips.image_size != r.image_size:
                raise ValueError(f"the {name} clips are {clips.image_size} px, the renderer was trained at "
                                 f"{r.image_size}")
            if clips.coeff_channels != config.mapping.coeff_nc:
                raise ValueError(f"the {name} clips have {clips.coeff_channels} coefficient channels, the MappingNet "
                                 f"expects {config.mapping.coeff_nc}")
        self.train, self.heldout, self.renderer, self.init = train, heldout, r, init

    def build(self, ctx: RunContext) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        mapping = MappingNet(config.mapping)
        if isinstance(self.init, MappingNet):
            mapping.load_state_dict(self.init.state_dict())
        elif self.init is not None:
            load_official(mapping, config.network, self.init)
        mapping.train()
        self.renderer.to(ctx.device)  # frozen, not trained: in no checkpoint
        self.mapping = mapping
        self.modules = {config.network: mapping}
        self.train_modules = {"mapping": mapping}
        self.optimizers = {"main": torch.optim.Adam(mapping.parameters(), lr=config.lr,
                                                    betas=tuple(config.adam_betas))}

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        c = self.config
        self.pyramid = ImagePyramid(c.pyramid_scales).to(ctx.device)
        self.eval_pairs = (self.heldout.fixed_pairs(c.eval_pairs, c.seed + 1, c.radius).to(ctx.device)
                           if self.heldout is not None else None)

    def batch_indices(self, step: int) -> np.ndarray:
        return np.arange(self.config.batch_size)  # positions in the step's global batch of pairs (train_step)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        c = self.config
        pairs = self.train.sample(ctx.global_size, step_rng(c.seed, ctx.step), c.radius,  # the global batch
                                  motion_candidates=c.motion_candidates, mouth_share=c.mouth_pairs)
        loss, terms, _ = mapping_step_losses(ctx.module("mapping"), self.renderer, pairs[ctx.part].to(ctx.device), c,
                                             self.pyramid)
        ctx.update("main", loss)
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.eval_pairs is None:
            return None
        return heldout_row(evaluate_mapping(self.mapping, self.renderer, self.eval_pairs, self.config,
                                            batch_size=max(self.config.batch_size, 1)))

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_renderer(out_dir, self.renderer, self.mapping, stage="mapping", steps=self.config.steps)

    def heldout_report(self, ctx: RunContext) -> HeldoutReport | None:
        if not self.heldout_sets or not ctx.is_main:
            return None
        split = {**self.split, "mapping_losses": [mapping_losses_label(self.config)]}
        return mapping_heldout_report(self.mapping, self.renderer, self.heldout_sets,
                                      self.config.heldout_pairs_per_clip, split,
                                      cross_identity=self.config.cross_identity)


def train_mapping(train: FaceRenderClips, heldout: FaceRenderClips | None,
                  renderer: FaceVid2VidNets | str | os.PathLike, config: MappingTrainConfig | None = None,
                  out_dir: str | os.PathLike = "runs/mapping", *,
                  init: MappingNet | str | os.PathLike | None = None, resume: bool = True,
                  stop_after: int | None = None) -> MappingRun:
    """Stage 2: train the MappingNet with the face-vid2vid networks of ``renderer`` frozen; resumable (``loop.run``
    on :class:`MappingStage`).

    renderer: face-vid2vid networks (frozen in place: eval mode, no weight gradients) or a checkpoint folder (e.g.
    a finished stage 1 run). out_dir receives ``log.csv``, ``checkpoints/mapping_<step>-model.pth`` and at the
    end a complete renderer checkpoint folder (:func:`save_renderer` with the MappingNet).
    init: a starting MappingNet or checkpoint folder / file (default: fresh, seeded with ``config.seed``).
    """
    stage = MappingStage(train, heldout, renderer, config, init=init)
    res = run(stage, out_dir, resume=resume, stop_after=stop_after)
    return MappingRun(mapping=stage.mapping.eval(), renderer=stage.renderer, history=res.history,
                      out_dir=Path(out_dir), config=stage.config, step=res.step, checkpoint=res.final)


def cli_stage(corpus: Path, preset: str, renderer: str | os.PathLike | None = None, **overrides) -> MappingStage:
    """``sadtalker-lab train mapping``: coefficient windows and frames of a corpus folder, split as the renderer's
    stage (``data.frames.split_frames``: the earlier frames of the training people; held out: their later frames
    and the held-out people), with the frozen face-vid2vid of the checkpoint folder ``renderer`` (e.g. the
    ``--out`` folder of ``sadtalker-lab train facevid2vid``)."""
    if renderer is None:
        raise ValueError("the MappingNet learns against a trained face-vid2vid: train it first "
                         "(sadtalker-lab train facevid2vid --out DIR) and pass renderer=DIR")
    config = getattr(MappingTrainConfig, preset)(**overrides)
    r = load_renderer(renderer)
    split = split_frames(corpus)
    load = lambda segs: FaceRenderClips.from_segments(corpus, segs, image_size=r.image_size)  # noqa: E731
    sets = {name: load(segs) for name, segs in (("later_time", split.later_time),
                                                 ("heldout_people", split.heldout_people)) if segs}
    held = sets.get("heldout_people", sets.get("later_time"))
    return MappingStage(load(split.train), held, r, config, heldout_sets=sets, split=split.to_json())
