"""Stage: face-vid2vid, self-supervised (paper Sec. 3.3 "As for training", FaceRender stage 1).

Two frames of the same clip (``data.frames``), a source and a driving one:

    x_c = KPDetector(source)                                  canonical keypoints [B, 15, 3]
    he_s, he_d = HEEstimator(source), HEEstimator(driving)    pose bins, t, expression deltas
    x_s, x_d = R_s x_c + t_s + delta_s, R_d x_c + t_d + delta_d          (steps.keypoints.facevid2vid_keypoints:
                                                          all of t, as face-vid2vid; SadTalker's inference keeps t_y)
    frame = Generator(source, x_s, x_d)                       reconstructs the driving frame
    L = perceptual(frame, driving) + GAN + 10 feature matching + 10 equivariance + 10 keypoint prior
        + 20 head pose + 5 expression (deformation prior);   D: hinge loss on (driving, frame)

Losses: ``facerender_losses`` (head-pose targets: the corpus' fitted 3DMM angles). Not face-vid2vid, off by
default and on in the ``cpu`` preset (``CPU_LANDMARK_TEACHER``): a landmark teacher. ``lambda_landmarks`` pulls
the keypoints' (x, y) towards 15 of the corpus' 68 landmarks and ``lambda_landmark_motion`` their motion towards
the landmarks' motion; ``teacher_landmarks`` / ``teacher_motion_only`` train the generator on keypoints moved by
the landmarks' motion, and ``detector_steps`` gives the detectors extra updates. Without it the tiny detectors'
keypoint motion errs by more than the motion at 64 px and the generator learns to ignore its keypoints (results/
facerender-motion-cpu-default-corpus.md). Logged always where the clips carry landmarks:
``keypoint_motion_error_px``, the keypoint motion against those landmarks' motion, beside
``keypoint_motion_still_px`` (keypoints that do not move). Hyper-parameters default to the paper / face-vid2vid
(Adam lr 2e-4, betas (0.5, 0.999), lr x 0.1 after 60% of the steps, batch 32, 256 px, official network sizes, bf16
on a GPU: the ``paper`` preset); ``.cpu()`` is a small face-vid2vid for 2 CPU cores (64 px, tiny networks, constant
lr, pairs biased to large head motion, identity-motion mask logit started low, the landmark teacher, moving averages
of the weights); ``.tiny()``
the test size (face-vid2vid's own training). Device, mixed precision and processes are the loop's (``train.loop``;
``device`` None: a GPU when there is one). Held out (:func:`cli_stage`): the later frames of the training people and
the held-out people (``data.frames.split_frames``); ``heldout.json`` gives motion transfer, face L1 / PSNR
(``metrics.motion_transfer``) and the identity-motion mask mass, each beside copying the source, and the frame
metrics also beside the same renderer driven with the source's own keypoints (``still_keypoints``: a renderer that
ignores its keypoints scores the same with and without them).

The networks travel as :class:`FaceVid2VidNets` (``facevid2vid_nets``: building, saving, loading). At the
end the run folder is a checkpoint folder in the official layout (``registry.save_networks``):
``SadTalker_V0.0.2_256.safetensors`` (kp_extractor + generator), ``facevid2vid_00189-model.pth.tar``
(kp_extractor + generator + he_estimator), and ``sadtalker_lab.json`` (the network configs and
``facerender.image_size``, the frame size the renderer was trained at).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ..data.augment import FV2V_JITTER, augment_pairs, check_jitter
from ..data.frames import FaceRenderClips, FramePairs, check_pair_sampling, split_frames
from ..models.facevid2vid import GeneratorConfig, KPDetectorConfig
from ..models.facevid2vid.head_pose import HEEstimatorConfig
from ..steps.keypoints import facevid2vid_keypoints, keypoint_transformation, pose_degrees
from ..metrics.motion_transfer import renderer_heldout_metrics
from .facevid2vid_nets import (  # noqa: F401  (re-exported: the stage's networks and files)
    FACEVID2VID_NETWORKS,
    FaceVid2VidNets,
    build_facevid2vid,
    load_renderer,
    mapping_network,
    save_renderer,
)
from .heldout import HeldoutReport
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, run, step_generator, step_rng
from .facerender_losses import (
    PYRAMID_SCALES,
    DiscriminatorConfig,
    ImagePyramid,
    MultiScaleDiscriminator,
    PerceptualLoss,
    RandomWarp,
    ANCHOR_LANDMARKS,
    anchor_landmarks,
    coeff_pose_degrees,
    discriminator_gan_loss,
    equivariance_loss,
    expression_prior_loss,
    feature_matching_loss,
    generator_gan_loss,
    headpose_loss,
    keypoint_prior_loss,
    landmark_anchor_loss,
    landmark_motion_loss,
    mouth_region_l1,
    pyramid_l1,
    teacher_keypoints,
)

__all__ = [
    "FaceVid2VidTrainConfig",
    "CPU_LANDMARK_TEACHER",
    "FACEVID2VID_ONLY",
    "NO_AUGMENTATION",
    "generator_keypoints_label",
    "FaceVid2VidNets",
    "build_facevid2vid",
    "save_renderer",
    "load_renderer",
    "facevid2vid_step_losses",
    "FaceVid2VidMetrics",
    "evaluate_facevid2vid",
    "render_pairs",
    "keypoint_motion_metrics",
    "FaceVid2VidRun",
    "FaceVid2VidStage",
    "train_facevid2vid",
    "cli_stage",
]

STEM_FACEVID2VID = "facevid2vid"  # checkpoints/facevid2vid_<step>-model.pth (the official file's stem)
LR_FACERENDER = 2e-4  # paper Sec. 4.1: "ExpNet, PoseVAE, and FaceRender are trained with a learning rate of ..., 2e-4"
FV2V_ADAM_BETAS = (0.5, 0.999)  # face-vid2vid train.py: every Adam uses betas (0.5, 0.999)
FV2V_BATCH = 32  # face-vid2vid config/vox-256.yaml train_params.batch_size
FV2V_LR_MILESTONES = (0.6,)  # vox-256.yaml: MultiStepLR x0.1 at epoch 180 of num_epochs 300, every network
FV2V_PERCEPTUAL = (10.0, 10.0, 10.0, 10.0)  # vox-256.yaml perceptual weight 10 (per level here, see losses)
FV2V_VGG_LAYERS = (10.0, 10.0, 10.0, 10.0, 10.0)  # loss_weights.perceptual: one per VGG-19 layer
FV2V_FEATURE_MATCHING = (10.0, 10.0, 10.0, 10.0)  # loss_weights.feature_matching: one per discriminator block
LAMBDA_GAN = 1.0  # loss_weights.generator_gan
LAMBDA_DISCRIMINATOR = 1.0  # loss_weights.discriminator_gan
LAMBDA_EQUIVARIANCE = 10.0  # vox-256.yaml loss_weights.equivariance_value
LAMBDA_KEYPOINT_PRIOR = 10.0  # loss_weights.keypoint
LAMBDA_HEADPOSE = 20.0  # loss_weights.headpose
LAMBDA_EXPRESSION = 5.0  # loss_weights.expression
LAMBDA_LANDMARKS = 0.0  # not in face-vid2vid: keypoints anchored to landmarks (facerender_losses; off by default)
# The CPU preset's landmark teacher (not face-vid2vid; results/facerender-motion-cpu-default-corpus.md, sections 4d
# and 6): without it the tiny detectors' keypoint motion errs by more than the motion at 64 px, the generator
# learns to ignore its keypoints, and the main job's face does not talk.
# With it the detectors have their own optimizer ("detectors", "main" then trains the generator alone); the preset
# keeps moving averages of the weights (``loop``'s ``ema_decay``: 0.99 per detector update, 0.98 per generator
# update; not face-vid2vid; section 24), which the held-out rows and the exported files use.
CPU_LANDMARK_TEACHER = dict(teacher_landmarks=True, teacher_motion_only=True, lambda_landmarks=50.0,
                            lambda_landmark_motion=200.0, detector_steps=10,
                            ema_decay={"detectors": 0.99, "main": 0.98})
FACEVID2VID_ONLY = dict(teacher_landmarks=False, teacher_motion_only=False, lambda_landmarks=0.0,
                        lambda_landmark_motion=0.0, detector_steps=1, ema_decay={})  # face-vid2vid's own, no teacher
NO_AUGMENTATION = dict(horizontal_flip=False, time_flip=False, jitter=(0.0, 0.0, 0.0, 0.0))  # data.augment off
FRAME_MULTIPLE = 32  # the KPDetector / HEEstimator halve the frame five times: its side must be a multiple of 32


@dataclass
class FaceVid2VidTrainConfig(TrainConfig):
    """Stage 1 settings. Defaults = the GPU preset: official network sizes, 256 px, face-vid2vid's loss weights.

    image_size: frame side in px (a multiple of 32 for the KPDetector / HEEstimator).
    kp_detector / generator / he_estimator: the network configs (official defaults; ``.cpu()``: ``tiny``).
    perceptual: "auto" (VGG-19 when torchvision's weights are on disk, else the stand-in), "vgg19",
    "pixel_ssim" or "pixel" (``facerender_losses.PerceptualLoss``); perceptual_weights: one weight per pyramid
    scale (``pyramid_scales``) of the stand-ins; vgg_layer_weights: one per VGG-19 layer.
    lambda_*: the other face-vid2vid terms (0 switches a term off); feature_matching_weights: one per
    discriminator block (all 0 and lambda_gan 0: no discriminator). sigma_affine / sigma_tps / points_tps: the
    random warp of the equivariance term (vox-256.yaml transform_params). eval_pairs: held-out (source,
    driving) pairs scored every ``eval_every`` steps. identity_mask_logit: None = the official initialisation;
    else the dense-motion mask bias of the identity motion starts there and the keypoint motions' at 0 (a
    negative value keeps the identity motion from being the easy default). zero_motion_heads: start the
    HEEstimator's pose / t / expression heads at zero, so that source and driving keypoints start equal (random
    heads give two frames of one clip very different keypoints, and the masks then learn to prefer the identity
    motion). motion_candidates: > 1 biases the
    training pairs to large head motion (``FaceRenderClips.sample``). heldout_pairs_per_clip: driving frames per
    held-out segment in ``heldout.json`` (the segment's first frame is the source). lambda_landmarks: weight
    of the landmark anchor (``facerender_losses.landmark_anchor_loss``; not a face-vid2vid term, 0 = off).
    teacher_landmarks: drive the generator with keypoints made of the corpus' 15 anchor landmarks (x, y; z 0;
    ``facerender_losses.landmark_keypoints``) instead of the detected ones, in training and in the held-out loss
    (not face-vid2vid; on in the ``cpu`` preset, off by default). The KPDetector and HEEstimator then learn only
    from their own terms (equivariance, priors, head pose, the landmark anchor: use ``lambda_landmarks``), and the
    generator learns to follow precise keypoints; the MappingNet is what drives it afterwards (``heldout.json`` adds
    the renderer driven by the landmarks, ``landmark_keypoints``). Needs 15 keypoints and clips with landmarks (rows
    without them use the detected keypoints). lambda_landmark_motion: weight of the same L1 on the keypoints' motion
    (x_d - x_s)(x, y) against the anchor landmarks' motion (not face-vid2vid; 0 = off): what the MappingNet's Eq. 14
    targets need to be precise, not the absolute positions. teacher_motion_only: with ``teacher_landmarks``, the
    generator's source keypoints are the detected ones (detached) and its driving keypoints those moved by the
    anchor landmarks' motion (``facerender_losses.teacher_keypoints``): it learns the detectors' placement with the
    true motion (not face-vid2vid; on in the ``cpu`` preset). detector_steps: with ``teacher_landmarks`` (where the
    generator's loss does not reach the detectors), the KPDetector and HEEstimator take this many updates per
    generator update, the extra ones on fresh pairs with their own terms only (not face-vid2vid; 1 by default, 10 in
    the ``cpu`` preset); the detectors learn slower than the tiny generator. :func:`generator_keypoints_label` names
    what drove the generator in training (``heldout.json``). mouth_pairs: share of each batch whose driving frame is,
    of the ``motion_candidates``, the one whose mouth opening differs most from the source's
    (``FaceRenderClips.sample``); lambda_mouth: weight of an L1 inside the box around both frames' lips
    (``facerender_losses.mouth_region_l1``). Neither is face-vid2vid; both off by default and in the presets
    (results/facerender-motion-cpu-default-corpus.md, section 7: over five seeds, not a clear gain).
    horizontal_flip / time_flip / jitter: face-vid2vid's data augmentation (vox-256.yaml ``augmentation_params``;
    ``data.augment``): each pair mirrored with probability 0.5 (frames, landmarks and head pose), its frames
    swapped with probability 0.5, and colour-jittered (brightness, contrast, saturation, hue); on by default.
    ``NO_AUGMENTATION`` switches all three off.
    """

    lr: float = LR_FACERENDER
    adam_betas: tuple[float, float] = FV2V_ADAM_BETAS
    batch_size: int = FV2V_BATCH
    lr_milestones: tuple[float, ...] = FV2V_LR_MILESTONES
    image_size: int = 256
    kp_detector: KPDetectorConfig = field(default_factory=KPDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    he_estimator: HEEstimatorConfig = field(default_factory=HEEstimatorConfig)
    pyramid_scales: tuple[float, ...] = PYRAMID_SCALES
    perceptual: str = "auto"
    perceptual_weights: tuple[float, ...] = FV2V_PERCEPTUAL
    vgg_layer_weights: tuple[float, ...] = FV2V_VGG_LAYERS
    lambda_gan: float = LAMBDA_GAN
    lambda_discriminator: float = LAMBDA_DISCRIMINATOR
    feature_matching_weights: tuple[float, ...] = FV2V_FEATURE_MATCHING
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    lambda_equivariance: float = LAMBDA_EQUIVARIANCE
    lambda_keypoint: float = LAMBDA_KEYPOINT_PRIOR
    lambda_headpose: float = LAMBDA_HEADPOSE
    lambda_expression: float = LAMBDA_EXPRESSION
    lambda_landmarks: float = LAMBDA_LANDMARKS
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5
    eval_pairs: int = 64
    identity_mask_logit: float | None = None
    zero_motion_heads: bool = False
    motion_candidates: int = 1
    heldout_pairs_per_clip: int = 8
    teacher_landmarks: bool = False
    teacher_motion_only: bool = False
    lambda_landmark_motion: float = 0.0
    detector_steps: int = 1
    lambda_mouth: float = 0.0
    mouth_pairs: float = 0.0
    horizontal_flip: bool = True
    time_flip: bool = True
    jitter: tuple[float, float, float, float] = FV2V_JITTER

    @property
    def uses_discriminator(self) -> bool:
        return bool(self.lambda_gan or any(self.feature_matching_weights))

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % FRAME_MULTIPLE:
            raise ValueError(f"image_size must be a multiple of {FRAME_MULTIPLE} (KPDetector / HEEstimator), "
                             f"got {self.image_size}")
        if len(self.perceptual_weights) != len(self.pyramid_scales):
            raise ValueError(f"{len(self.perceptual_weights)} perceptual weights for scales {self.pyramid_scales}")
        if self.kp_detector.num_kp != self.generator.num_kp or self.generator.num_kp != self.he_estimator.num_kp:
            raise ValueError("kp_detector, generator and he_estimator must agree on num_kp")
        if self.lambda_landmarks or self.teacher_landmarks or self.lambda_landmark_motion:
            anchor_landmarks(self.kp_detector.num_kp)
        if self.teacher_motion_only and not self.teacher_landmarks:
            raise ValueError("teacher_motion_only is a kind of teacher_landmarks: set teacher_landmarks=True too")
        if self.detector_steps < 1:
            raise ValueError(f"detector_steps must be >= 1, got {self.detector_steps}")
        if self.detector_steps > 1 and not self.teacher_landmarks:
            raise ValueError("detector_steps > 1 needs teacher_landmarks=True: otherwise the generator's loss trains "
                             "the detectors too, and extra detector updates without it would pull them apart")
        check_pair_sampling(self.motion_candidates, self.mouth_pairs)
        check_jitter(self.jitter)
        if self.detector_steps > 1 and self.grad_accum > 1:
            raise ValueError("detector_steps > 1 needs grad_accum=1 (each extra detector update is a whole step)")

    @classmethod
    def paper(cls, **changes) -> "FaceVid2VidTrainConfig":
        """The paper / face-vid2vid configuration: official network sizes, 256 px, batch 32, lr 2e-4, every loss
        at vox-256.yaml's weight, its augmentation (flip, time flip, colour jitter), bf16 on a GPU
        (``mixed_precision`` "auto"). The defaults."""
        return cls(**changes)

    @classmethod
    def cpu(cls, **changes) -> "FaceVid2VidTrainConfig":
        """Small CPU preset (notebooks, CI, ``--preset cpu``): the ``tiny`` networks (15 keypoints) at 64 px,
        a tiny patch discriminator, 800 steps of 8 pairs at lr 2e-3 (10x the paper's 2e-4, for minutes of CPU;
        reached linearly over the first 50 steps; ~16 min on one core of a 2-core AVX-512 EPYC),
        pairs biased to large motion (best of 4 driving frames), the identity-motion mask logit started at -3;
        held-out loss every 50 steps, checkpoints every 100; one torch thread (two ran several times slower on 2
        cores shared with other work). Not face-vid2vid: the landmark teacher ``CPU_LANDMARK_TEACHER`` (the
        generator learns the detected source keypoints moved by the corpus landmarks' motion, the detectors take
        10 updates per generator update with the landmark anchor and motion terms); ``**FACEVID2VID_ONLY``
        switches it off. Without face-vid2vid's augmentation (``NO_AUGMENTATION``): at 250 steps it made the
        MappingNet's motion transfer worse in 3 of 5 seeds (results/facerender-motion-cpu-default-corpus.md,
        section 9). A constant lr: face-vid2vid's decay at 60% of the steps (``FV2V_LR_MILESTONES``, the default)
        made the detectors' motion transfer worse at 250 steps in 2 of 2 seeds (section 18). Moving averages of the
        detectors' and the generator's weights (``ema_decay`` in ``CPU_LANDMARK_TEACHER``; not face-vid2vid): at 250
        steps on the main job's corpus they lowered face-vid2vid's held-out motion-transfer error by its own detectors
        in 3 of 3 seeds (0.80-0.86x copy-source against 0.88-0.98x) and the MappingNet's (0.65-0.79x against
        0.71-0.92x; section 24). A linear lr warm-up (``lr_warmup_steps`` = min(50, steps // 6) unless given): at the
        full lr from the first step Adam's first updates took the identity-motion mask's weight from 0.0033 to below
        1e-4 in 5 of 5 seeds at 300 steps, under the official 1e-3 blend cut (one stayed there: 0.89x copy-source);
        with the warm-up no seed went below 0.001, and held-out motion transfer was 0.73-0.80x against 0.74-0.89x
        (mean 0.77x against 0.80x; held-out people 0.85x against 0.82x; section 29). 800 steps instead of 300:
        face-vid2vid by its own detectors 0.63-0.71x copy-source over eight seeds (mean 0.68x, 6 within issue #14's
        0.7x; the held-out people alone 0.69-0.76x) against 0.71-0.78x (mean 0.75x, none) at 300 (sections 33, 34)."""
        base = dict(image_size=64, kp_detector=KPDetectorConfig.tiny(), generator=GeneratorConfig.tiny(),
                    he_estimator=HEEstimatorConfig.tiny(), discriminator=DiscriminatorConfig.tiny(),
                    steps=800, batch_size=8, lr=2e-3, eval_every=50, checkpoint_every=100, eval_pairs=16,
                    num_threads=1, identity_mask_logit=-3.0, motion_candidates=4, lr_milestones=(),
                    **CPU_LANDMARK_TEACHER,
                    **NO_AUGMENTATION)
        merged = {**base, **changes}
        merged.setdefault("lr_warmup_steps", min(50, int(merged["steps"]) // 6))
        return cls(**merged)

    @classmethod
    def tiny(cls, **changes) -> "FaceVid2VidTrainConfig":
        """Test preset: the CPU preset at 32 px (a 3-block discriminator), 4 steps of 2 pairs, held-out loss and
        checkpoints every 2 steps on 4 pairs, 2 held-out driving frames per segment, no tqdm bar; face-vid2vid's own
        training (``FACEVID2VID_ONLY``: the tests of the teacher set it themselves)."""
        base = dict(image_size=32, steps=4, batch_size=2, checkpoint_every=2, eval_every=2, eval_pairs=4,
                    progress=False, discriminator=DiscriminatorConfig.tiny(num_blocks=3), heldout_pairs_per_clip=2,
                    **FACEVID2VID_ONLY)
        return cls.cpu(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# One step's losses, held-out numbers, pictures
# ---------------------------------------------------------------------------------------------
def generator_keypoints_label(config: FaceVid2VidTrainConfig) -> str:
    """What drove the generator in training, for reports: face-vid2vid's own detectors, or a landmark teacher
    (a stand-in for precise keypoints, not face-vid2vid)."""
    if config.teacher_motion_only:
        return ("teacher (not face-vid2vid): the detected source keypoints moved by the corpus' anchor landmarks' "
                "motion")
    if config.teacher_landmarks:
        return "teacher (not face-vid2vid): keypoints made of the corpus' anchor landmarks"
    return "face-vid2vid: the KPDetector + HEEstimator keypoints"


def check_size(batch: FramePairs, image_size: int) -> None:
    if tuple(batch.source.shape[2:]) != (image_size, image_size):
        raise ValueError(f"frames are {tuple(batch.source.shape[2:])}, the renderer works at {image_size} px: "
                         f"build the clips with image_size={image_size}")


def facevid2vid_step_losses(r, batch: FramePairs, config: FaceVid2VidTrainConfig,
                            perceptual: PerceptualLoss | ImagePyramid,
                            warp_generator: torch.Generator | None = None, *, warp: RandomWarp | None = None,
                            detectors_only: bool = False
                            ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Stage 1 on one batch, without the discriminator terms (``FaceVid2VidStage.train_step`` adds them) ->
    (total loss, {term: unweighted value}, generated driving frames [B, 3, S, S]).

    detectors_only: the KPDetector / HEEstimator terms alone, no generator call (frames: None); what the extra
    ``detector_steps`` updates use under ``teacher_landmarks``.

    r: :class:`FaceVid2VidNets` (or anything with its three networks as attributes and ``image_size``, e.g. their
    DDP-wrapped versions). perceptual: a :class:`PerceptualLoss` (an ``ImagePyramid``: the pixel pyramid L1).
    The equivariance warp is ``warp``, else drawn with ``warp_generator``.
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
    kp_s = facevid2vid_keypoints(kp_c, he_s)
    kp_d = facevid2vid_keypoints(kp_c, he_d)
    generated = pred = None
    total, terms = kp_c.new_zeros(()), {}
    if detectors_only:
        if not c.teacher_landmarks:
            raise ValueError("detectors_only needs teacher_landmarks: otherwise the detectors learn from the frames")
    elif c.teacher_landmarks:  # the generator follows the landmarks; the detectors learn from their own terms
        teach_s, teach_d = teacher_keypoints(kp_s.detach(), kp_d.detach(), batch.source_landmarks,
                                             batch.driving_landmarks, c.teacher_motion_only)
        generated = r.generator(batch.source, kp_source=teach_s, kp_driving=teach_d)
    else:
        generated = r.generator(batch.source, kp_source=kp_s, kp_driving=kp_d)
    if generated is not None:
        pred = generated["prediction"]
        if isinstance(perceptual, ImagePyramid):
            perceptual = pyramid_l1(pred, batch.driving, perceptual, c.perceptual_weights)
        else:
            perceptual = perceptual(pred, batch.driving)
        total = perceptual
        terms["perceptual"] = float(perceptual.detach())
        if c.lambda_mouth:
            mouth = mouth_region_l1(pred, batch.driving, batch.source_landmarks, batch.driving_landmarks)
            total = total + c.lambda_mouth * mouth
            terms["mouth_l1"] = float(mouth.detach())
    if warp is not None:
        kp_t = facevid2vid_keypoints(kp_c, he_t)
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
    if c.lambda_landmarks:
        idx = anchor_landmarks(kp_c.shape[1])
        lm = 0.5 * (landmark_anchor_loss(kp_s, batch.source_landmarks, idx)
                    + landmark_anchor_loss(kp_d, batch.driving_landmarks, idx))
        total = total + c.lambda_landmarks * lm
        terms["landmark_anchor"] = float(lm.detach())
    if c.lambda_landmark_motion:
        lm_motion = landmark_motion_loss(kp_s, kp_d, batch.source_landmarks, batch.driving_landmarks)
        total = total + c.lambda_landmark_motion * lm_motion
        terms["landmark_motion"] = float(lm_motion.detach())
    if kp_c.shape[1] == len(ANCHOR_LANDMARKS) and bool(torch.isfinite(batch.driving_landmarks).any()):
        # diagnostic: do the keypoints move as the face does? |keypoint motion - landmark motion| (x, y) at the
        # anchor landmarks, in px, beside the same for no keypoint motion at all ("still")
        err, still = keypoint_motion_px(kp_d - kp_s, batch.driving_landmarks - batch.source_landmarks, c.image_size)
        terms["keypoint_motion_error_px"], terms["keypoint_motion_still_px"] = err, still
    if generated is not None:
        terms["image_l1"] = float((pred.detach() - batch.driving).abs().mean())
        # diagnostic: weight of the background (identity) motion in the dense motion masks; near 1 the frame no
        # longer depends on the keypoints (copying the source frame is identity motion everywhere: 1)
        terms["background_motion"] = float(generated["mask"][:, 0].detach().mean())
    terms["loss"] = float(total.detach())
    return total, terms, pred


def perceptual_loss(config: FaceVid2VidTrainConfig) -> PerceptualLoss:
    """The perceptual term of ``config`` (VGG-19 or the labelled weight-free stand-in)."""
    return PerceptualLoss(config.perceptual, config.pyramid_scales, config.perceptual_weights,
                          config.vgg_layer_weights)


@dataclass
class FaceVid2VidMetrics:
    """Held-out stage 1 numbers (eval mode): ``loss`` and its terms (unweighted), ``image_l1`` = mean |generated -
    driving| in [0, 1] pixels, ``headpose_deg`` = mean absolute head-pose error per angle (degrees),
    ``background_motion`` = mean weight of the identity motion in the dense motion masks (a diagnostic),
    ``keypoint_motion_error_px`` / ``keypoint_motion_still_px`` = |keypoint motion - landmark motion| at the anchor
    landmarks, px, for the trained keypoints / for keypoints that do not move (NaN without landmarks)."""

    loss: float
    perceptual: float
    image_l1: float
    equivariance: float = float("nan")
    keypoint_prior: float = float("nan")
    headpose_deg: float = float("nan")
    expression: float = float("nan")
    landmark_anchor: float = float("nan")
    landmark_motion: float = float("nan")
    keypoint_motion_error_px: float = float("nan")
    keypoint_motion_still_px: float = float("nan")
    background_motion: float = float("nan")
    mouth_l1: float = float("nan")


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
    perceptual = perceptual_loss(config).to(pairs.source.device)
    sums: dict[str, float] = {}
    for k, (part, n) in enumerate(chunks(pairs, batch_size)):
        _, terms, _ = facevid2vid_step_losses(r, part, config, perceptual, step_generator(seed, k))
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
    kp_s = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.source))
    kp_d = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.driving))
    out = {"source": pairs.source, "driving": pairs.driving,
           "reconstruction": r.generator.render(feature, kp_source=kp_s, kp_driving=kp_d)["prediction"]}
    if mapping is not None:
        ms = keypoint_transformation(kp_c, mapping(pairs.source_window))
        md = keypoint_transformation(kp_c, mapping(pairs.driving_window))
        out["mapped"] = r.generator.render(feature, kp_source=ms, kp_driving=md)["prediction"]
    return out


@torch.no_grad()
def render_heldout(r: FaceVid2VidNets, pairs: FramePairs, batch_size: int = 16, *, still: bool = False,
                   landmarks: bool = False, motion_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated driving frames [N, 3, S, S] (HEEstimator keypoints, eval mode) and per pair the mean mask mass on
    the identity motion [N]. still: drive with the source's own keypoints (x_d = x_s: nothing of the driving frame
    reaches the renderer; the ``still_keypoints`` baseline of ``heldout.json``). landmarks: keypoints made of the
    pairs' anchor landmarks instead (``facerender_losses.landmark_keypoints``; what ``teacher_landmarks`` trains
    the generator with; ``motion_only``: the detected source keypoints moved by the landmarks' motion, as
    ``teacher_motion_only``)."""
    was = r.training
    r.eval()
    frames, mass = [], []
    device = next(r.parameters()).device
    for part, _ in chunks(pairs, batch_size):
        part = part.to(device)
        kp_c = r.kp_extractor(part.source)
        kp_s = facevid2vid_keypoints(kp_c, r.he_estimator(part.source))
        kp_d = facevid2vid_keypoints(kp_c, r.he_estimator(part.driving))
        if landmarks:
            kp_s, kp_d = teacher_keypoints(kp_s, kp_d, part.source_landmarks, part.driving_landmarks, motion_only)
        out = r.generator(part.source, kp_source=kp_s, kp_driving=kp_s if still else kp_d)
        frames.append(out["prediction"])
        mass.append(out["mask"][:, 0].flatten(1).mean(1))
    r.train(was)
    return torch.cat(frames), torch.cat(mass)


STILL_KEYPOINTS = "still_keypoints"  # baseline: the renderer driven with the source's keypoints (no motion)
LANDMARK_KEYPOINTS = "landmark_keypoints"  # reference: the renderer driven by the pairs' anchor landmarks
KEYPOINT_MOTION_LABEL = ("|keypoint motion (x_d - x_s) - landmark motion| at the 15 anchor landmarks "
                         f"(facerender_losses.ANCHOR_LANDMARKS), px; {STILL_KEYPOINTS}: no keypoint motion")


@torch.no_grad()
def keypoint_motion_px(kp_motion: torch.Tensor, landmark_motion: torch.Tensor, image_size: int) -> tuple[float, float]:
    """(|keypoint motion - landmark motion|, |landmark motion|) in px of ``image_size`` frames, at the anchor
    landmarks: kp_motion [B, 15, 3] (x_d - x_s), landmark_motion [B, 68, 2] (normalised; NaN rows left out). The
    second number is the error of keypoints that do not move."""
    px = (image_size - 1) / 2
    return (px * float(landmark_anchor_loss(kp_motion, landmark_motion)),
            px * float(landmark_anchor_loss(torch.zeros_like(kp_motion), landmark_motion)))


@torch.no_grad()
def keypoint_motion_metrics(r: FaceVid2VidNets, sets: dict[str, FaceRenderClips], per_clip: int = 8) -> dict:
    """Do the keypoints move as the face does? On each set's first-frame pairs (as ``heldout.json``'s other
    numbers): ``<set>/keypoint_motion_error_px`` beside ``still_keypoints``, and over all sets together. Empty
    when the renderer does not have 15 keypoints or the clips carry no landmarks."""
    from .heldout import HeldoutMetric

    if r.kp_extractor.config.num_kp != len(ANCHOR_LANDMARKS):
        return {}
    was = r.training
    r.eval()
    device = next(r.parameters()).device
    out, err_sum, still_sum, count = {}, 0.0, 0.0, 0
    for name, clips in sets.items():
        pairs = clips.first_frame_pairs(per_clip)
        moved = pairs.driving_landmarks - pairs.source_landmarks
        ok = torch.isfinite(moved).all(-1).all(-1)
        if not bool(ok.any()):
            continue
        part = pairs[ok].to(device)
        kp_c = r.kp_extractor(part.source)
        motion = facevid2vid_keypoints(kp_c, r.he_estimator(part.driving)) - facevid2vid_keypoints(
            kp_c, r.he_estimator(part.source))
        err, still = keypoint_motion_px(motion.cpu(), moved[ok], r.image_size)
        out[f"{name}/keypoint_motion_error_px"] = HeldoutMetric(err, {STILL_KEYPOINTS: still}, True,
                                                                KEYPOINT_MOTION_LABEL)
        n = int(ok.sum())
        err_sum, still_sum, count = err_sum + err * n, still_sum + still * n, count + n
    r.train(was)
    if count:
        out = {"keypoint_motion_error_px": HeldoutMetric(err_sum / count, {STILL_KEYPOINTS: still_sum / count},
                                                         True, KEYPOINT_MOTION_LABEL), **out}
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
                 init: FaceVid2VidNets | str | os.PathLike | None = None,
                 heldout_sets: dict[str, FaceRenderClips] | None = None, split: dict | None = None):
        self.config = config = config or FaceVid2VidTrainConfig()
        sets = dict(heldout_sets or {})
        for what, clips in (("clips", train), ("held-out clips", heldout), *sets.items()):
            if clips is not None and clips.image_size != config.image_size:
                raise ValueError(f"the {what} are {clips.image_size} px, config.image_size is {config.image_size}")
        self.train, self.heldout, self.init = train, heldout, init
        self.heldout_sets, self.split = sets, dict(split or {})

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
        betas = tuple(config.adam_betas)
        if config.teacher_landmarks:  # the two losses do not meet: detectors and generator step apart
            detectors = [p for n in ("kp_extractor", "he_estimator") for p in getattr(r, n).parameters()]
            self.optimizers = {"main": torch.optim.Adam(r.generator.parameters(), lr=config.lr, betas=betas),
                               "detectors": torch.optim.Adam(detectors, lr=config.lr, betas=betas)}
        else:
            self.optimizers = {"main": torch.optim.Adam(list(r.parameters()), lr=config.lr, betas=betas)}
        if config.uses_discriminator:
            self.discriminator = MultiScaleDiscriminator(config.discriminator).train()
            self.modules["discriminator"] = self.train_modules["discriminator"] = self.discriminator
            self.optimizers["disc"] = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        self.perceptual = perceptual_loss(self.config).to(ctx.device)
        self.eval_pairs = None
        if self.heldout is not None:
            self.eval_pairs = self.heldout.fixed_pairs(self.config.eval_pairs, self.config.seed + 1).to(ctx.device)

    def extra_state(self) -> dict:
        return {"image_size": self.config.image_size}

    def batch_indices(self, step: int) -> np.ndarray:
        return np.arange(self.config.batch_size)  # positions in the step's global batch of pairs (train_step)

    def _pairs(self, ctx: StepContext, stream: int) -> tuple[FramePairs, RandomWarp | None]:
        """This process's pairs of the step's global batch ``stream`` and their equivariance warp."""
        c = self.config
        rng = step_rng(c.seed, ctx.step, stream)
        pairs = self.train.sample(ctx.global_size, rng, motion_candidates=c.motion_candidates,
                                  mouth_share=c.mouth_pairs, time_flip=c.time_flip)
        pairs = augment_pairs(pairs, rng, horizontal_flip=c.horizontal_flip, jitter=c.jitter)  # the global batch
        warp = None
        if c.lambda_equivariance:  # drawn for the global batch too, then this process's rows
            warp = RandomWarp(ctx.global_size, c.sigma_affine, c.sigma_tps, c.points_tps,
                              generator=ctx.generator(stream)).select(ctx.part)
        return pairs[ctx.part].to(ctx.device), warp

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        c = self.config
        nets = SimpleNamespace(image_size=c.image_size, **{n: ctx.module(n) for n in FACEVID2VID_NETWORKS})
        for extra in range(1, c.detector_steps):  # teacher_landmarks: the detectors' extra updates, fresh pairs
            batch, warp = self._pairs(ctx, extra)
            loss, _, _ = facevid2vid_step_losses(nets, batch, c, self.perceptual, warp=warp, detectors_only=True)
            ctx.update("detectors", loss)
        batch, warp = self._pairs(ctx, 0)
        loss, terms, pred = facevid2vid_step_losses(nets, batch, c, self.perceptual, warp=warp)
        step = ("main", "detectors") if c.teacher_landmarks else "main"
        if not c.uses_discriminator:
            ctx.update(step, loss)
            return terms
        b = len(batch)
        with ctx.frozen("discriminator") as d:  # real and generated in one call: one forward per step and module
            both = d(torch.cat([batch.driving, pred]))
        real = [([f[:b] for f in feats], logits[:b]) for feats, logits in both]
        fake = [([f[b:] for f in feats], logits[b:]) for feats, logits in both]
        gan = generator_gan_loss(fake)
        fm = feature_matching_loss(real, fake, c.feature_matching_weights)
        ctx.update(step, loss + c.lambda_gan * gan + fm, zero=("disc",))
        both = ctx.module("discriminator")(torch.cat([batch.driving, pred.detach()]))
        d_loss = discriminator_gan_loss([(f, x[:b]) for f, x in both], [(f, x[b:]) for f, x in both])
        ctx.update("disc", c.lambda_discriminator * d_loss)
        terms.update(generator_gan=float(gan.detach()), feature_matching=float(fm.detach()),
                     discriminator=float(d_loss.detach()))
        terms["loss"] += float((c.lambda_gan * gan + fm).detach())
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

    def heldout_report(self, ctx: RunContext) -> HeldoutReport | None:
        if not self.heldout_sets or not ctx.is_main:
            return None
        c = self.config
        others = {STILL_KEYPOINTS: lambda pairs: render_heldout(self.nets, pairs, still=True)}
        if c.teacher_landmarks:  # what the generator was trained with
            others[LANDMARK_KEYPOINTS] = lambda pairs: render_heldout(self.nets, pairs, landmarks=True,
                                                                      motion_only=c.teacher_motion_only)
        metrics = renderer_heldout_metrics(lambda pairs: render_heldout(self.nets, pairs), self.heldout_sets,
                                           c.heldout_pairs_per_clip, baselines=others)
        metrics.update(keypoint_motion_metrics(self.nets, self.heldout_sets, c.heldout_pairs_per_clip))
        split = {**self.split, "perceptual": [perceptual_loss(c).label],
                 "generator_keypoints": [generator_keypoints_label(c)]}
        return HeldoutReport("facevid2vid", metrics, split)


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


def cli_stage(corpus: Path, preset: str, **overrides) -> FaceVid2VidStage:
    """``sadtalker-lab train facevid2vid``: frames of a corpus folder, split by ``data.frames.split_frames`` (the
    corpus' people split, or ``identity_split``; the last quarter of each training clip held out too). The
    periodic held-out loss runs on the held-out people; ``heldout.json`` covers both held-out sets."""
    config = getattr(FaceVid2VidTrainConfig, preset)(**overrides)
    split = split_frames(corpus)
    load = lambda segs: FaceRenderClips.from_segments(corpus, segs, image_size=config.image_size)  # noqa: E731
    sets = {name: load(segs) for name, segs in (("later_time", split.later_time),
                                                 ("heldout_people", split.heldout_people)) if segs}
    held = sets.get("heldout_people", sets.get("later_time"))
    return FaceVid2VidStage(load(split.train), held, config, heldout_sets=sets, split=split.to_json())
