"""PoseVAE training (paper Sec. 3.2, Fig. 4; supp. B.3 Eq. 11-13), with the switches of the Table 4 ablation.

One step on a batch of 33-frame windows (rho_0 and the 32 frames after it; official ``Audio2Pose.forward``):

    Delta rho = rho_{1..32} - rho_0                                     the residual motion        [B, 32, 6]
    a = Phi_A(mel_{1..32})      (frozen, as the official Audio2Pose freezes its Wav2Lip encoder; offline a
                                 seeded random one unless given: posevae_audio.py)
    mu, logvar = Encoder(Delta rho, rho_0, a, style);  z = mu + eps exp(logvar / 2)
    Delta rho' = Decoder(z, rho_0, a, style)
    L_MSE = MSE(Delta rho', Delta rho)  (Eq. 11);  L_KL = KL(q(z) || N(0, I))
    D: 1-D PatchGAN on pose sequences rho_0 + Delta rho' (fake) vs rho_{1..32} (real), least squares (Eq. 12)
    L_pose = lambda_MSE L_MSE + lambda_KL L_KL + lambda_GAN L_GAN        (Eq. 13; L_KL with optional free bits)

Held-out evaluation against a still head and a random training sequence, and the whole-clip metrics (Diversity,
Beat Align): ``posevae_eval.py``; ``PoseVAEStage.heldout_report`` writes them to ``heldout.json``.

Table 4 switches (:data:`POSEVAE_ABLATIONS`): ``use_gan`` (w/o L_GAN), ``use_ref_pose`` (w/o initial pose:
rho_0 = 0 as the condition), ``use_audio`` (w/o audio: zero audio embeddings), and all three conditions off
(``use_style`` too: one shared style). "Single fixed" vs "mixed" style is a way of *sampling* the trained model
(one fixed style id for every clip vs a randomly selected style per clip; Sec. 4.4): see
:func:`evaluate_posevae_clips`. Checkpoints are written in the official ``auido2pose`` layout (+ optimizer
states of generator and discriminator, and RNG state).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING


import numpy as np
import torch

from ..data.windows import PoseWindows
from ..models.posevae import PoseVAE, PoseVAEConfig
from ..official import OFFICIAL_NETWORKS
from ..official.io import load_official, save_official_pth
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, precise_batchnorm, run
from .losses import gan_discriminator_loss, gan_generator_loss, kl_loss, mse_loss, pose_total
from .posevae_audio import AudioFrameCache, AudioStandardizer, audio_embeddings, load_audio_encoder, split_audio_encoder
from .posevae_audio import with_embeddings as _with_embeddings
from .posevae_export import fold_audio_standardizer, fold_pose_scale, residual_rms

if TYPE_CHECKING:
    from .posevae_eval import PoseHeldoutMetrics

__all__ = [
    "PoseVAETrainConfig", "POSEVAE_ABLATIONS", "load_audio_encoder", "audio_embeddings", "posevae_forward",
    "PoseVAEHeldout", "evaluate_posevae", "calibrate_batchnorm",
    "residual_rms", "fold_pose_scale", "PoseVAERun", "PoseVAEStage", "train_posevae", "cli_stage",
]

NETWORK = "audio2pose"
CKPT_STEM = "auido2pose"  # the official file's stem (auido2pose_00140-model.pth, sic)
LR_POSEVAE = 1e-4  # Sec. 4.1: "ExpNet, PoseVAE, and FaceRender are trained with a learning rate of 2e-5, 1e-4, 2e-4"
POSEVAE_WINDOW = 32  # Sec. 4.1: "PoseVAE is learned via continuous 32 frames" (= PoseVAEConfig.seq_len)


@dataclass
class PoseVAETrainConfig(TrainConfig):
    """PoseVAE settings; defaults are the paper's (Sec. 4.1: lr 1e-4, 32-frame windows; Eq. 13 weights).

    lr_discriminator: Adam lr of the sequence discriminator (the paper gives one lr; we use it for both).
    use_gan / use_ref_pose / use_audio / use_style: the Table 4 switches.
    audio_encoder: a checkpoint (file or folder) to take the frozen audio encoder Phi_A from: an ``auido2exp``
    file (e.g. an ExpNet trained here: the stand-in for the official frozen Wav2Lip encoder), an ``auido2pose``
    file or the official safetensors; None keeps the seeded random encoder (a fixed random feature map).
    official_logvar: reproduce the official encoder's quirk (logvar from the *means* layer,
    ``official.POSEVAE_LOGVAR_FROM_MEANS_LAYER``) during training; off by default so the KL term sees a real
    variance head (inference never uses the encoder, so the saved file is the same either way).
    pose_scale / pose_rms: train on poses divided by ``pose_scale`` (None: the RMS of the training residuals
    Delta rho over ``pose_rms``, i.e. residuals of RMS ``pose_rms`` in training units; 1.0: raw units).
    Head-pose residuals are a few hundredths of a radian: in raw units L_MSE is ~1e-4 against an L_KL of
    order 1 and the CVAE collapses to its mean at once. ``pose_rms`` 0.25 puts the residuals in the range the
    decoder's last layer starts in (``pose_linear`` on sigmoid features in (0, 1), initial weights ~0.4), so it
    need not first grow its weights for thousands of steps. The scale is folded into the weights at export
    (:func:`fold_pose_scale`): the final official-layout file works in raw units like any official checkpoint.
    precise_bn_windows: before every held-out evaluation and the final save, re-estimate the encoder's and
    decoder's BatchNorm statistics on this many training windows (:func:`calibrate_batchnorm`; 0 = off).
    kl_free_bits / kl_warmup_steps: keep the CVAE from collapsing to its mean (z ignored): the KL of each latent
    dimension counts as at least ``kl_free_bits`` nats (:func:`free_bits_kl`), and lambda_KL ramps up from 0 over
    the first ``kl_warmup_steps`` steps (:meth:`kl_weight`). 0 / 0 (the defaults): the plain Eq. 13.
    zero_init_output: a fresh model starts with the decoder's last layer (``pose_linear``) at zero, i.e. as the
    still head (Delta rho' = 0), instead of PyTorch's random init. A zero weight passes no gradient to the layers
    below it, so the decoder starts by fitting the mean residual alone and learns slowly what rho_0 and the audio
    predict: off in every preset since session 35 (measurements in :meth:`cpu`).
    audio_train_layers: train the audio encoder's last k blocks with the CVAE (0: all frozen, as the official
    training freezes its *pretrained* Wav2Lip encoder; ``posevae_audio.py``). Needs windows with ``mel``.
    standardize_ref_pose: feed rho_0 to the encoder and decoder with unit std per value over the training windows
    (a gain folded into their first layers at export). In pose units rho_0 is a weak input (std ~0.3 beside 64
    latent and 192 audio inputs of std ~1), and the motion's mean reversion towards the style's rest pose, the
    most predictable part of Delta rho, depends on it.
    standardize_audio: feed the audio features Phi_A to the encoder and decoder with zero mean and unit std per
    value over the training frames (:class:`~sadtalker_lib.train.posevae_audio.AudioStandardizer`, fixed at the
    start of a run, folded into both ``linear_audio`` layers at export). A random frozen encoder's features are
    ~100x weaker than z and rho_0; without this the CVAE ignores the audio for the first thousands of steps.
    Only when ``use_audio``. Off in every preset: on the 36-clip default corpus (1000 steps, frozen encoder, one
    split and seed) the motion follows the audio's timing (Beat Align with the clips' own audio 0.298 vs 0.235 with
    shuffled audio; off: 0.198 vs 0.203) but no longer generalises to held-out people (pose MSE 1.99e-3, above a
    still head's 1.93e-3; off: 1.55e-3). One gain for all 512 values instead of one per value: 0.219 vs 0.260.
    init_logvar: a fresh encoder's log-variance head starts at this constant (None: random init), a
    near-deterministic posterior at the start. gan_on_prior: L_GAN on decoder outputs for z ~ N(0, I) (the
    inference path) instead of the posterior sample. Both off in every preset (200 CPU steps: no gain measured).
    gan_warmup_steps: lambda_GAN ramps up from 0 over this many steps (:meth:`gan_weight`; 0 = Eq. 13 throughout;
    the CPU preset: a quarter of its steps).
    """

    lr: float = LR_POSEVAE
    lr_discriminator: float = LR_POSEVAE
    batch_size: int = 32
    window: int = POSEVAE_WINDOW
    lambda_mse: float = 1.0  # Eq. 13
    lambda_kl: float = 1.0  # Eq. 13
    lambda_gan: float = 0.7  # Eq. 13
    use_gan: bool = True
    use_ref_pose: bool = True
    use_audio: bool = True
    use_style: bool = True
    audio_encoder: str | None = None
    official_logvar: bool = False
    pose_scale: float | None = None
    pose_rms: float = 0.25
    precise_bn_windows: int = 256
    kl_free_bits: float = 0.0
    kl_warmup_steps: int = 0
    zero_init_output: bool = False
    audio_train_layers: int = 0
    standardize_ref_pose: bool = False
    standardize_audio: bool = False
    init_logvar: float | None = None
    gan_on_prior: bool = False
    gan_warmup_steps: int = 0

    @classmethod
    def cpu(cls, **changes) -> "PoseVAETrainConfig":
        """CPU preset (the CLI, notebook 04): 2000 steps of 16 windows (~11 min on one core of a 2-core AVX-512
        Xeon), lr 3e-3 for both nets (30x the paper's 1e-4), the audio encoder frozen (as the official one),
        held-out loss every 100 steps, BatchNorm re-estimated on 128 windows; against a collapsed posterior
        (Adam rescales even a tiny KL gradient to full-size steps, so lowering lambda_KL alone does not help):
        0.25 free nats per latent dimension, rho_0 standardised, and residuals of unit RMS in training units (L_MSE
        on the scale of L_GAN and L_KL, which Eq. 13's weights 1, 1, 0.7 balance; at RMS 0.25 the adversarial term
        outweighs L_MSE ~15x).

        Measured on the 36-clip default corpus (2 people held out, seed 0): the model is under-trained, not
        collapsed, at a few hundred steps. Held-out pose MSE / still head's and sample Diversity / the real
        motion's: 200 steps with the encoder's top 2 blocks trained (the preset before, 104 s): 0.94x and 0.15;
        1000 steps frozen (~1.6x cheaper per step): 0.80x and 0.47; 2000 steps frozen: 0.83x and 0.60. Other
        held-out people (split seed 1; calmer: a still head's MSE is 0.39x split 0's): 200 steps as before: 1.00x
        and 0.003 (z unused, a still head); 2000 steps frozen: 1.06x (worse than a still head) and 0.69.

        L_GAN ramps up over the first quarter of the steps (``gan_warmup_steps`` = steps // 4 unless given): with
        Eq. 13's 0.7 from the first step, 1 of 4 training seeds collapsed to a still head (split 0, 2000 steps,
        seeds 0-3: MSE / still head's 0.83, 1.00, 0.93, 0.86; Diversity ratio 0.60, 0.006, 0.43, 0.65); with the
        ramp over 500 steps: 0.75, 0.79, 0.85, 0.83 and 0.56, 0.56, 0.57, 0.58. (Both paragraphs: measured with the
        decoder's output layer starting at zero, ``zero_init_output``, the preset until session 35.)

        The output layer starts at PyTorch's random init (``zero_init_output`` False; session 35, 2-core AMD EPYC,
        one thread): at notebook 04's defaults (36 clips, 16 training clips, 2 people held out, 2000 steps) the same
        as the zero init within seed noise: MSE / still head's 0.912, 0.837, 0.875 for seeds 0-2 (zero init: 0.861,
        0.887 for seeds 0, 1), Diversity ratio 0.67, 0.59, 0.71 (zero init, seed 1: 0.53). At notebook 04's CI size
        (10-clip corpus, 6 training clips, 200 steps of 8) it learns what the zero init cannot start on: 0.916,
        0.932, 0.933 for seeds 0-2 (zero init: 0.965, 0.996, 0.985; at 60 steps both ~1.00)."""
        base = dict(steps=2000, batch_size=16, lr=3e-3, lr_discriminator=3e-3, eval_every=100, checkpoint_every=250,
                    precise_bn_windows=128, kl_free_bits=0.25, zero_init_output=False, audio_train_layers=0,
                    standardize_ref_pose=True, pose_rms=1.0)
        merged = {**base, **changes}
        merged.setdefault("gan_warmup_steps", int(merged["steps"]) // 4)
        return cls(**merged)

    @classmethod
    def tiny(cls, **changes) -> "PoseVAETrainConfig":
        """Seconds-long smoke preset (tests, CLI checks): 4 steps of 4 windows, otherwise the CPU preset."""
        base = dict(steps=4, batch_size=4, eval_every=2, checkpoint_every=2, precise_bn_windows=8, progress=False)
        return cls.cpu(**{**base, **changes})

    def kl_weight(self, step: int) -> float:
        """lambda_KL at optimizer step ``step``: ramped linearly from 0 over ``kl_warmup_steps`` (KL annealing)."""
        if self.kl_warmup_steps <= 0:
            return self.lambda_kl
        return self.lambda_kl * min(1.0, step / self.kl_warmup_steps)

    def gan_weight(self, step: int) -> float:
        """lambda_GAN at optimizer step ``step``: ramped linearly from 0 over ``gan_warmup_steps`` (the
        discriminator trains from the start; the generator first learns from L_MSE and L_KL alone)."""
        if self.gan_warmup_steps <= 0:
            return self.lambda_gan
        return self.lambda_gan * min(1.0, step / self.gan_warmup_steps)

    def ablation(self, name: str) -> "PoseVAETrainConfig":
        """This config with a Table 4 row's switches (:data:`POSEVAE_ABLATIONS`)."""
        if name not in POSEVAE_ABLATIONS:
            raise KeyError(f"unknown PoseVAE ablation {name!r}; known: {sorted(POSEVAE_ABLATIONS)}")
        return self.replace(**POSEVAE_ABLATIONS[name])


# Table 4 rows (the two "OursFull" rows differ only in how styles are sampled: evaluate_posevae_clips).
POSEVAE_ABLATIONS: dict[str, dict] = {
    "full": {},
    "no_gan": {"use_gan": False},  # "w/o L_gan"
    "no_ref_pose": {"use_ref_pose": False},  # "w/o initial pose"
    "no_audio": {"use_audio": False},  # "w/o audio"
    "no_conditions": {"use_ref_pose": False, "use_audio": False, "use_style": False},  # "w/o all conditions"
}


def free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """L_KL with "free bits" (Kingma et al. 2016): per latent dimension, the batch-mean KL, raised to at least
    ``free_bits`` nats (no gradient below it), then averaged over dimensions. 0: :func:`losses.kl_loss`."""
    if free_bits <= 0:
        return kl_loss(mu, logvar)
    per_dim = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(0)  # [64]
    return per_dim.clamp(min=free_bits).mean()


# --- Forward pass and losses ------------------------------------------------------------------------------------------
def _conditions(pose: torch.Tensor, emb: torch.Tensor, style: torch.Tensor, config: PoseVAETrainConfig,
                ref_gain: torch.Tensor | None = None):
    ref = pose[:, 0] if ref_gain is None else pose[:, 0] * ref_gain.to(pose.device)  # standardize_ref_pose
    ref_c = ref if config.use_ref_pose else torch.zeros_like(ref)  # "w/o initial pose"
    emb_c = emb if config.use_audio else torch.zeros_like(emb)  # "w/o audio"
    style_c = style if config.use_style else torch.zeros_like(style)  # one shared style
    return ref_c, emb_c, style_c


def posevae_forward(model: PoseVAE, pose: torch.Tensor, emb: torch.Tensor, style: torch.Tensor,
                    eps: torch.Tensor | None, config: PoseVAETrainConfig, ref_gain: torch.Tensor | None = None):
    """The CVAE training path. pose [B, T+1, 6], emb [B, T, 512], style [B]; eps [B, 64] (None: z = mu).

    Returns (Delta rho' [B, T, 6], Delta rho [B, T, 6], mu, logvar [B, 64]).
    """
    dev = next(model.encoder.parameters()).device  # windows are held on the CPU; the model may be on a GPU
    pose, emb, style = pose.to(dev), emb.to(dev), style.to(dev)
    eps = None if eps is None else eps.to(dev)
    motion_gt = pose[:, 1:] - pose[:, :1]  # Delta rho
    ref_c, emb_c, style_c = _conditions(pose, emb, style, config, ref_gain)
    h_mu, h_logvar = model.encoder(motion_gt, ref_c, emb_c, style_c)
    z = h_mu if eps is None else h_mu + eps * torch.exp(0.5 * h_logvar)  # reparameterisation
    return model.decoder(z, ref_c, emb_c, style_c), motion_gt, h_mu, h_logvar


@dataclass
class PoseVAEHeldout:
    """Held-out window losses (eval mode): loss = lambda_MSE mse + lambda_KL kl with z = mu (Eq. 11, 13 without
    the adversarial term); prior_mse: MSE of the decoder alone with z ~ N(0, I) (the inference path)."""

    loss: float
    mse: float
    kl: float
    prior_mse: float


@torch.no_grad()
def evaluate_posevae(model: PoseVAE, windows: PoseWindows, config: PoseVAETrainConfig | None = None,
                     seed: int = 1234, batch_size: int = 64, ref_gain: torch.Tensor | None = None) -> PoseVAEHeldout:
    """Held-out losses on windows (which must carry ``audio_emb`` or ``mel``); deterministic for ``seed``."""
    config = config or PoseVAETrainConfig()
    windows = _with_embeddings(model, windows)
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    n = len(windows)
    sums = np.zeros(3)
    for s in range(0, n, batch_size):
        sl = slice(s, min(s + batch_size, n))
        pose, emb, style = (x[sl].to(dev) for x in (windows.pose, windows.audio_emb, windows.style))
        pred, gt, mu, logvar = posevae_forward(model, pose, emb, style, None, config, ref_gain)
        ref_c, emb_c, style_c = _conditions(pose, emb, style, config, ref_gain)
        z = torch.randn(len(pose), model.config.latent_size, generator=g).to(dev)
        prior = model.decoder(z, ref_c, emb_c, style_c)
        sums += len(pose) * np.array([float(mse_loss(pred, gt)), float(kl_loss(mu, logvar)),
                                      float(mse_loss(prior, gt))])
    model.train(was)
    mse, kl, prior_mse = sums / n
    return PoseVAEHeldout(loss=config.lambda_mse * mse + config.lambda_kl * kl, mse=mse, kl=kl, prior_mse=prior_mse)


@torch.no_grad()
def calibrate_batchnorm(model: PoseVAE, windows: PoseWindows, config: PoseVAETrainConfig, n_windows: int = 256,
                        batch_size: int = 64, seed: int = 0, ref_gain: torch.Tensor | None = None) -> PoseVAE:
    """``loop.precise_batchnorm`` for the CVAE (encoder and decoder; the frozen audio encoder and the
    discriminator keep theirs) on ``n_windows`` training windows, through the training path (z = mu + eps sigma)."""
    if n_windows <= 0:
        return model
    idx = torch.as_tensor(np.random.default_rng([seed, 0xB7]).permutation(len(windows))[:n_windows])
    g = torch.Generator().manual_seed(seed)

    def run():
        for s in range(0, len(idx), batch_size):
            i = idx[s:s + batch_size]
            eps = torch.randn(len(i), model.config.latent_size, generator=g)
            posevae_forward(model, windows.pose[i], windows.audio_emb[i], windows.style[i], eps, config, ref_gain)

    precise_batchnorm([model.encoder, model.decoder], run)
    return model


# --- The stage (the loop is train/loop.py) ----------------------------------------------------------------------------
@dataclass
class PoseVAERun:
    """A finished (or stopped) run: the model (eval mode), its log, the official-layout file; heldout: the numbers
    of ``heldout.json`` (``posevae_eval.PoseHeldoutMetrics``: pose MSE beside a still head's ...) when the run
    finished with held-out windows."""

    model: PoseVAE
    history: TrainHistory
    checkpoint: Path | None
    out_dir: Path
    config: PoseVAETrainConfig
    step: int
    heldout: PoseHeldoutMetrics | None = None


def _scaled(windows: PoseWindows | None, scale: float) -> PoseWindows | None:
    return None if windows is None else replace(windows, pose=windows.pose / scale)


class PoseVAEStage(Stage):
    """PoseVAE (encoder, decoder, discriminator; frozen audio encoder) as a :class:`~sadtalker_lib.train.loop.Stage`.
    Two optimizers: the discriminator's step (Eq. 12, max_D) comes first, then the CVAE's (Eq. 13)."""

    name, stem = "PoseVAE", CKPT_STEM

    def __init__(self, train: PoseWindows, heldout: PoseWindows | None = None,
                 config: PoseVAETrainConfig | None = None, *, init: PoseVAE | str | os.PathLike | None = None):
        self.config = config or PoseVAETrainConfig()
        if train.window != self.config.window:
            raise ValueError(f"the windows have {train.window} frames after rho_0, config.window is "
                             f"{self.config.window}")
        self.train, self.heldout, self.init = train, heldout, init
        self.exported = False
        self.split: dict = {}  # what heldout.json says the numbers were measured on (cli_stage: the corpus split)

    def build(self, ctx: RunContext) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        model = PoseVAE(PoseVAEConfig(seq_len=config.window, logvar_from_means_layer=config.official_logvar))
        if isinstance(self.init, PoseVAE):
            model.load_state_dict(self.init.state_dict())
        elif self.init is not None:
            load_official(model, NETWORK, self.init)
        elif config.audio_encoder:
            load_audio_encoder(model, config.audio_encoder)
        if self.init is None and config.zero_init_output:
            torch.nn.init.zeros_(model.decoder.pose_linear.weight)  # start as the still head: Delta rho' = 0
            torch.nn.init.zeros_(model.decoder.pose_linear.bias)
        if self.init is None and config.init_logvar is not None:  # a near-deterministic posterior to start
            torch.nn.init.zeros_(model.encoder.linear_logvar.weight)
            torch.nn.init.constant_(model.encoder.linear_logvar.bias, config.init_logvar)
        if int(self.train.style.max()) >= model.config.num_classes:
            raise ValueError(f"style ids must be < {model.config.num_classes}, got {int(self.train.style.max())}")
        model.train()
        model.audio_encoder.eval()
        for p in model.audio_encoder.parameters():
            p.requires_grad_(False)  # frozen, as the official Audio2Pose freezes its Wav2Lip encoder
        top = split_audio_encoder(model, config.audio_train_layers)[1] if self.train.mel is not None else None
        for p in top.parameters() if top is not None else ():
            p.requires_grad_(True)  # ... except its top blocks when asked (posevae_audio.py)
        betas = tuple(config.adam_betas)
        self.model = model
        self.modules = {NETWORK: model}
        self.train_modules = {"encoder": model.encoder, "decoder": model.decoder}
        if top is not None and len(top):
            self.train_modules["audio_top"] = top
        if config.use_gan:
            self.train_modules["discriminator"] = model.discriminator
        params = [*model.encoder.parameters(), *model.decoder.parameters(), *(top.parameters() if top else ())]
        self.optimizers = {
            "main": torch.optim.Adam(params, lr=config.lr, betas=betas),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=config.lr_discriminator,
                                              betas=betas),
        }

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        self.model.audio_encoder.eval()
        self.audio_cache: dict[str, AudioFrameCache] = {}
        if "audio_top" in self.train_modules:  # the frozen bottom once per frame; the top runs in every step
            bottom = split_audio_encoder(self.model, self.config.audio_train_layers)[0]
            self.audio_cache = {k: AudioFrameCache.build(bottom, w) for k, w in (("train", self.train),
                                                                                 ("heldout", self.heldout))
                                if w is not None and w.mel is not None}
        top = split_audio_encoder(self.model, self.config.audio_train_layers)[1]
        with torch.no_grad():
            cached = {k: replace(getattr(self, k), audio_emb=c.embed(top).cpu(), mel=None)
                      for k, c in self.audio_cache.items()}
        # after a restore: the saved encoder's features
        train = cached.get("train") or _with_embeddings(self.model, self.train)
        heldout = cached.get("heldout") or _with_embeddings(self.model, self.heldout)
        config = self.config
        self.audio_std = None
        if config.standardize_audio and config.use_audio and train.audio_emb is not None:
            saved = ((checkpoint or {}).get("extra") or {}).get("audio_standardizer")  # a resumed run keeps its own
            self.audio_std = AudioStandardizer.from_json(saved) if saved else AudioStandardizer.fit(train.audio_emb)
            train = replace(train, audio_emb=self.audio_std(train.audio_emb))
            if heldout is not None and heldout.audio_emb is not None:
                heldout = replace(heldout, audio_emb=self.audio_std(heldout.audio_emb))
        self.scale = float(config.pose_scale) if config.pose_scale else residual_rms(train) / config.pose_rms
        self.train_units, self.heldout_units = _scaled(train, self.scale), _scaled(heldout, self.scale)
        self.ref_gain = None
        if config.standardize_ref_pose:  # rho_0 as a condition: unit std per value over the training windows
            self.ref_gain = 1.0 / self.train_units.pose[:, 0].std(0).clamp(min=0.05)

    @torch.no_grad()
    def _refresh_audio(self) -> None:
        """Held-out and training windows get the audio embeddings of the current (partly trained) encoder."""
        top = split_audio_encoder(self.model, self.config.audio_train_layers)[1]
        for key, cache in self.audio_cache.items():
            w = self.train_units if key == "train" else self.heldout_units
            w.audio_emb = self._standardized(cache.embed(top).cpu())

    def _standardized(self, emb: torch.Tensor) -> torch.Tensor:
        return emb if self.audio_std is None else self.audio_std(emb)

    def extra_state(self) -> dict:
        extra = {"pose_scale": self.scale}
        if self.audio_std is not None:
            extra["audio_standardizer"] = self.audio_std.to_json()
        return extra

    def num_examples(self) -> int:
        return len(self.train)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        config, w, idx = self.config, self.train_units, ctx.indices
        pose, emb, style = (x.to(ctx.device) for x in (w.pose[idx], w.audio_emb[idx], w.style[idx]))
        if self.audio_cache:
            emb = self._standardized(self.audio_cache["train"].embed(ctx.module("audio_top"), idx)).to(ctx.device)
        eps = ctx.randn(self.model.config.latent_size)
        cvae = SimpleNamespace(encoder=ctx.module("encoder"), decoder=ctx.module("decoder"))  # DDP-wrapped
        pred, gt, mu, logvar = posevae_forward(cvae, pose, emb, style, eps, config, self.ref_gain)
        fake = pose[:, :1] + pred  # rho_0 + Delta rho'
        if config.use_gan and config.gan_on_prior:  # D judges the inference path: z ~ N(0, I)
            ref_c, emb_c, style_c = _conditions(pose, emb, style, config, self.ref_gain)
            z = ctx.randn(self.model.config.latent_size, stream=1)
            fake = pose[:, :1] + cvae.decoder(z, ref_c, emb_c, style_c)
        real = pose[:, 1:]
        terms: dict[str, float] = {}
        b = len(idx)
        if config.use_gan:  # discriminator step first (Eq. 12, max_D)
            # real and fake go through D as ONE batch: its BatchNorm layers must not normalise each set on its
            # own (that would hide exactly the differences in scale a collapsed generator shows)
            d_out = ctx.module("discriminator")(torch.cat([real, fake.detach()]))
            l_d = gan_discriminator_loss(d_out[:b], d_out[b:])
            ctx.update("discriminator", l_d)
            terms["d_loss"] = l_d.item()
            with ctx.frozen("discriminator") as disc:
                l_gan = gan_generator_loss(disc(torch.cat([real, fake]))[b:])  # Eq. 12, min_G
        else:
            l_gan = torch.zeros((), device=ctx.device)
        l_mse, l_kl = mse_loss(pred, gt), kl_loss(mu, logvar)  # Eq. 11, KL
        loss = pose_total(l_mse, free_bits_kl(mu, logvar, config.kl_free_bits), l_gan, lambda_mse=config.lambda_mse,
                          lambda_kl=config.kl_weight(ctx.step),
                          lambda_gan=config.gan_weight(ctx.step) if config.use_gan else 0.0)
        ctx.update("main", loss)
        terms.update(loss=loss.item(), mse=l_mse.item(), kl=l_kl.item(), gan=l_gan.item())
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.heldout_units is None or not len(self.heldout_units):
            return None
        self._refresh_audio()
        calibrate_batchnorm(self.model, self.train_units, self.config, self.config.precise_bn_windows,
                            seed=self.config.seed, ref_gain=self.ref_gain)
        m = evaluate_posevae(self.model, self.heldout_units, self.config, seed=self.config.seed + 1,
                             ref_gain=self.ref_gain)
        self.model.audio_encoder.eval()
        return {k: v for k, v in vars(m).items() if not math.isnan(v)}

    def heldout_report(self, ctx: RunContext):
        """``heldout.json``: held-out pose MSE vs a still head and a random training sequence, diversity, KL, z use
        (:mod:`sadtalker_lib.train.posevae_eval`), in raw units (after :meth:`export`)."""
        if self.heldout_units is None or not len(self.heldout_units):
            return None
        from .posevae_eval import evaluate_pose_heldout, pose_heldout_report

        raw = 1.0 / self.scale if self.exported else 1.0
        self.heldout_metrics = evaluate_pose_heldout(self.model, _scaled(self.heldout_units, raw),
                                                     _scaled(self.train_units, raw), self.config, seed=self.config.seed)
        return pose_heldout_report(self.heldout_metrics, self.split)

    def finalize(self, ctx: RunContext) -> None:
        self._refresh_audio()
        if self.heldout_units is None or not len(self.heldout_units):  # else the last evaluation calibrated them
            calibrate_batchnorm(self.model, self.train_units, self.config, self.config.precise_bn_windows,
                                seed=self.config.seed, ref_gain=self.ref_gain)

    def to_raw_units(self) -> None:
        """Fold ``ref_gain``, the audio standardizer and the pose scale into the weights: from here on the model
        works in raw units on the audio encoder's own features (the held windows get those back too)."""
        if self.ref_gain is not None:
            with torch.no_grad():
                for mlp in (self.model.encoder.MLP, self.model.decoder.MLP):
                    mlp.L0.weight[:, :6] *= self.ref_gain.to(mlp.L0.weight.device)
        if self.audio_std is not None:
            fold_audio_standardizer(self.model, self.audio_std.mean, self.audio_std.gain)
            for w in (self.train_units, self.heldout_units):
                if w is not None and w.audio_emb is not None:
                    w.audio_emb = self.audio_std.invert(w.audio_emb)
        fold_pose_scale(self.model, self.scale)
        self.exported = True

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        self.to_raw_units()
        if out_dir is None or not ctx.is_main:
            return None
        return save_official_pth({NETWORK: self.model}, out_dir / OFFICIAL_NETWORKS[NETWORK].pth_file,
                                 epoch=self.config.steps)


def train_posevae(train: PoseWindows, heldout: PoseWindows | None = None, config: PoseVAETrainConfig | None = None,
                  out_dir: str | os.PathLike = "runs/posevae", *, init: PoseVAE | str | os.PathLike | None = None,
                  resume: bool = True, stop_after: int | None = None) -> PoseVAERun:
    """Train PoseVAE (encoder, decoder, discriminator; the audio encoder stays frozen) on ``train`` windows.

    out_dir receives ``log.csv``, ``checkpoints/auido2pose_<step>-model.pth`` (official layout + optimizer and
    RNG state; weights in training units, ``extra["pose_scale"]``) and at the end ``auido2pose_00140-model.pth``
    (the official file name; ``epoch`` = steps; raw units). The returned model works in raw units.
    Held-out losses in the log are in training units (poses / pose_scale).
    init: a starting PoseVAE or official checkpoint (default: fresh weights seeded with ``config.seed``; then
    ``config.audio_encoder`` supplies Phi_A). resume / stop_after: as in ``train_expnet``.
    """
    stage = PoseVAEStage(train, heldout, config, init=init)
    res = run(stage, out_dir, resume=resume, stop_after=stop_after)
    if not stage.exported:
        stage.to_raw_units()
    stage.model.eval()
    return PoseVAERun(model=stage.model, history=res.history, checkpoint=res.final, out_dir=Path(out_dir),
                      config=stage.config, step=res.step, heldout=getattr(stage, "heldout_metrics", None))


def cli_stage(corpus: Path, preset: str, heldout_fraction: float = 0.25, **overrides) -> PoseVAEStage:
    """``sadtalker-lab train posevae``: 33-frame windows of a corpus folder, held out by person
    (``data.corpus.splits.identity_split``: whole identities; one identity only: the last clips, labelled as such);
    training windows every 4 frames, held-out windows every 16."""
    from ..data.corpus import CorpusDataset, load_index
    from ..data.corpus.splits import identity_split
    from ..data.windows import pose_windows_from_dataset

    config = getattr(PoseVAETrainConfig, preset)(**overrides)
    n_clips = len(load_index(corpus)["clips"])
    split = identity_split(corpus, heldout_fraction, seed=config.seed,
                           min_heldout_clips=max(1, math.ceil(heldout_fraction * n_clips)))
    windows = [pose_windows_from_dataset(CorpusDataset(corpus, window=config.window + 1, stride=stride, clips=ids))
               for ids, stride in ((split.train, 4), (split.heldout, 16))]
    stage = PoseVAEStage(windows[0], windows[1], config)
    stage.split = {**{k: v for k, v in split.to_json().items() if isinstance(v, list)}, "kind": [split.describe()]}
    return stage
