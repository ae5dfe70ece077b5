"""PoseVAE training (paper Sec. 3.2, Fig. 4; supp. B.3 Eq. 11-13), with the switches of the Table 4 ablation.

One step on a batch of 33-frame windows (rho_0 and the 32 frames after it; official ``Audio2Pose.forward``):

    Delta rho = rho_{1..32} - rho_0                                     the residual motion        [B, 32, 6]
    a = Phi_A(mel_{1..32})      (frozen audio encoder, as the official Audio2Pose freezes its Wav2Lip encoder)
    mu, logvar = Encoder(Delta rho, rho_0, a, style);  z = mu + eps exp(logvar / 2)
    Delta rho' = Decoder(z, rho_0, a, style)
    L_MSE = MSE(Delta rho', Delta rho)  (Eq. 11);  L_KL = KL(q(z) || N(0, I))
    D: 1-D PatchGAN on pose sequences rho_0 + Delta rho' (fake) vs rho_{1..32} (real), least squares (Eq. 12)
    L_pose = lambda_MSE L_MSE + lambda_KL L_KL + lambda_GAN L_GAN        (Eq. 13)

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
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, Sequence

import numpy as np
import torch

from ..coeffs import ANGLE
from ..data.windows import PoseWindows
from ..models.posevae import PoseVAE, PoseVAEConfig
from ..official import OFFICIAL_NETWORKS
from ..official.io import load_official, official_state_dict, read_checkpoint, save_official_pth
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, precise_batchnorm, run
from .losses import gan_discriminator_loss, gan_generator_loss, kl_loss, mse_loss, pose_total

__all__ = [
    "PoseVAETrainConfig", "POSEVAE_ABLATIONS", "load_audio_encoder", "audio_embeddings", "posevae_forward",
    "PoseVAEHeldout", "evaluate_posevae", "PoseClipMetrics", "evaluate_posevae_clips", "calibrate_batchnorm",
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

    @classmethod
    def cpu(cls, **changes) -> "PoseVAETrainConfig":
        """Small CPU preset (notebooks, CI): 200 steps of 16 windows, lr 1e-3 for both nets (10x the paper's
        1e-4), held-out loss every 25 steps, BatchNorm re-estimated on 128 windows."""
        base = dict(steps=200, batch_size=16, lr=1e-3, lr_discriminator=1e-3, eval_every=25, checkpoint_every=50,
                    precise_bn_windows=128)
        return cls(**{**base, **changes})

    @classmethod
    def tiny(cls, **changes) -> "PoseVAETrainConfig":
        """Seconds-long smoke preset (tests, CLI checks): 4 steps of 4 windows at the CPU preset's lr."""
        base = dict(steps=4, batch_size=4, lr=1e-3, lr_discriminator=1e-3, eval_every=2, checkpoint_every=2,
                    precise_bn_windows=8, progress=False)
        return cls(**{**base, **changes})

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


# --- Audio features ---------------------------------------------------------------------------------------------------
def load_audio_encoder(model: PoseVAE, source: str | os.PathLike | Mapping) -> PoseVAE:
    """Copy Phi_A into ``model.audio_encoder`` from an auido2exp / auido2pose checkpoint (file, folder or dict)."""
    ckpt = source if isinstance(source, Mapping) else None
    if ckpt is None and Path(source).is_file():
        ckpt = read_checkpoint(source)
    for network, prefix in (("audio2exp", "audio_encoder."), ("audio2pose", "audio_encoder.audio_encoder.")):
        try:
            sd = official_state_dict(network, ckpt if ckpt is not None else source)
        except Exception:  # noqa: BLE001 - try the next layout
            continue
        enc = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if enc:
            from ..official.io import load_state_dict_checked

            load_state_dict_checked(model.audio_encoder, enc, where=f"{source} [{network} audio encoder]")
            return model
    raise ValueError(f"{source} holds no audio encoder (looked for auido2exp and auido2pose layouts)")


@torch.no_grad()
def audio_embeddings(model: PoseVAE, windows: PoseWindows, batch_frames: int = 256) -> torch.Tensor:
    """Phi_A (eval mode) on frames 1..T of every window: [N, T, 512].

    Frames shared by overlapping windows of the same clip (known from ``clip`` and ``start``) are encoded once.
    """
    if windows.mel is None:
        raise ValueError("the windows carry no mel windows to encode")
    enc = model.audio_encoder
    was = enc.training
    enc.eval()
    n, t1 = windows.mel.shape[:2]
    if windows.start is not None:
        frame_ids = windows.clip[:, None] * 1_000_000 + windows.start[:, None] + torch.arange(1, t1)  # [N, T]
    else:
        frame_ids = torch.arange(n * (t1 - 1)).reshape(n, t1 - 1)
    uniq, inverse = torch.unique(frame_ids.reshape(-1), return_inverse=True)
    first = torch.full((len(uniq),), -1, dtype=torch.long)
    flat_pos = torch.arange(frame_ids.numel())
    first.scatter_reduce_(0, inverse, flat_pos, reduce="amin", include_self=False)
    mels = windows.mel[:, 1:].reshape(-1, *windows.mel.shape[2:])[first]  # [U, 1, 80, 16]
    out = torch.cat([enc(mels[i:i + batch_frames]).reshape(-1, enc.out_channels)
                     for i in range(0, len(mels), batch_frames)])
    enc.train(was)
    return out[inverse].reshape(n, t1 - 1, -1)


def _with_embeddings(model: PoseVAE, windows: PoseWindows | None) -> PoseWindows | None:
    if windows is None or windows.audio_emb is not None:
        return windows
    from dataclasses import replace

    return replace(windows, audio_emb=audio_embeddings(model, windows), mel=None)


# --- Forward pass and losses ------------------------------------------------------------------------------------------
def _conditions(pose: torch.Tensor, emb: torch.Tensor, style: torch.Tensor, config: PoseVAETrainConfig):
    ref = pose[:, 0]
    ref_c = ref if config.use_ref_pose else torch.zeros_like(ref)  # "w/o initial pose"
    emb_c = emb if config.use_audio else torch.zeros_like(emb)  # "w/o audio"
    style_c = style if config.use_style else torch.zeros_like(style)  # one shared style
    return ref_c, emb_c, style_c


def posevae_forward(model: PoseVAE, pose: torch.Tensor, emb: torch.Tensor, style: torch.Tensor,
                    eps: torch.Tensor | None, config: PoseVAETrainConfig):
    """The CVAE training path. pose [B, T+1, 6], emb [B, T, 512], style [B]; eps [B, 64] (None: z = mu).

    Returns (Delta rho' [B, T, 6], Delta rho [B, T, 6], mu, logvar [B, 64]).
    """
    motion_gt = pose[:, 1:] - pose[:, :1]  # Delta rho
    ref_c, emb_c, style_c = _conditions(pose, emb, style, config)
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
                     seed: int = 1234, batch_size: int = 64) -> PoseVAEHeldout:
    """Held-out losses on windows (which must carry ``audio_emb`` or ``mel``); deterministic for ``seed``."""
    config = config or PoseVAETrainConfig()
    windows = _with_embeddings(model, windows)
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    n = len(windows)
    sums = np.zeros(3)
    for s in range(0, n, batch_size):
        sl = slice(s, min(s + batch_size, n))
        pose, emb, style = windows.pose[sl], windows.audio_emb[sl], windows.style[sl]
        pred, gt, mu, logvar = posevae_forward(model, pose, emb, style, None, config)
        ref_c, emb_c, style_c = _conditions(pose, emb, style, config)
        z = torch.randn(len(pose), model.config.latent_size, generator=g)
        prior = model.decoder(z, ref_c, emb_c, style_c)
        sums += len(pose) * np.array([float(mse_loss(pred, gt)), float(kl_loss(mu, logvar)),
                                      float(mse_loss(prior, gt))])
    model.train(was)
    mse, kl, prior_mse = sums / n
    return PoseVAEHeldout(loss=config.lambda_mse * mse + config.lambda_kl * kl, mse=mse, kl=kl, prior_mse=prior_mse)


# --- Whole-clip metrics: diversity and beat alignment (Table 4) -------------------------------------------------------
@dataclass
class PoseClipMetrics:
    """Per-clip means over generated clips. diversity: mean over angles of the std over time (radians,
    ``metrics.diversity``); beat_align: Bailando's Beat Align Score of the head angles against the speech
    (``metrics.beat_align``); real_*: the same for the corpus motion of those clips; style: how styles were picked."""

    diversity: float
    beat_align: float
    real_diversity: float
    real_beat_align: float
    style: str
    per_clip: list[dict]


def evaluate_posevae_clips(model: PoseVAE, clips: Sequence[Mapping], style: str = "fixed", fixed_style: int = 0,
                           seed: int = 0, num_styles: int | None = None) -> PoseClipMetrics:
    """Generate every clip's head motion with the inference path (``audio2coeff.predict_pose``: 32-frame chunks,
    z ~ N(0, I), savgol smoothing) and score it.

    clips: dicts with ``mel`` [T, 1, 80, 16], ``coeffs`` [T, 70] (rho_0 = frame 0's pose; the rest is the real
    motion for the reference numbers), ``audio`` (16 kHz) and ``style_id``. style: "fixed" (every clip with
    ``fixed_style``: Table 4 "Single Fixed Style") or "mixed" (a randomly selected style per clip out of
    ``num_styles``, default the styles present in ``clips``: "Mixed Style").
    """
    from sadtalker_lib.metrics.beat_align import beat_align
    from sadtalker_lib.metrics.diversity import diversity

    from ..audio2coeff import predict_pose

    if style not in ("fixed", "mixed"):
        raise ValueError(f"style must be 'fixed' or 'mixed', got {style!r}")
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    pool = sorted({int(c["style_id"]) for c in clips}) if num_styles is None else list(range(num_styles))
    was = model.training
    model.eval()
    rows = []
    for c in clips:
        mel = torch.as_tensor(np.asarray(c["mel"]), dtype=torch.float32)[None]
        coeffs = np.asarray(c["coeffs"], np.float32)
        sid = fixed_style if style == "fixed" else int(rng.choice(pool))
        pred = predict_pose(model, mel, torch.from_numpy(coeffs[:1])[None], style=sid, generator=g)
        angles = pred.pose[0, :, :3].numpy()
        real = coeffs[:, ANGLE]
        audio = np.asarray(c["audio"], np.float32)
        row = {"style_id": sid, "diversity": diversity(angles), "real_diversity": diversity(real)}
        for key, feats in (("beat_align", angles), ("real_beat_align", real)):
            try:
                row[key] = beat_align(audio, 16000, feats, 25.0).score
            except ValueError:
                row[key] = float("nan")
        rows.append(row)
    model.train(was)
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in ("diversity", "beat_align", "real_diversity",
                                                                  "real_beat_align")}
    return PoseClipMetrics(style=style, per_clip=rows, **mean)


@torch.no_grad()
def calibrate_batchnorm(model: PoseVAE, windows: PoseWindows, config: PoseVAETrainConfig, n_windows: int = 256,
                        batch_size: int = 64, seed: int = 0) -> PoseVAE:
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
            posevae_forward(model, windows.pose[i], windows.audio_emb[i], windows.style[i], eps, config)

    precise_batchnorm([model.encoder, model.decoder], run)
    return model


# --- Pose units -------------------------------------------------------------------------------------------------------
def residual_rms(windows: PoseWindows) -> float:
    """RMS of the residual motion Delta rho = rho_t - rho_0 over all windows, frames and pose values."""
    return float((windows.pose[:, 1:] - windows.pose[:, :1]).pow(2).mean().sqrt())


@torch.no_grad()
def fold_pose_scale(model: PoseVAE, scale: float) -> PoseVAE:
    """Turn a PoseVAE trained on poses / ``scale`` into one that takes and returns raw poses (in place).

    Exact (up to rounding) because poses enter and leave only through linear maps:
    the ref-pose columns 0:6 of both MLPs' first layer and the encoder ResUnet's two input convs (which see
    Delta rho) are divided by ``scale``; the decoder's ``pose_linear`` (weight and bias) is multiplied by it;
    the discriminator's first conv (no bias; it sees rho) is divided by it.
    """
    if scale == 1.0:
        return model
    inv = 1.0 / scale
    model.encoder.MLP.L0.weight[:, :6] *= inv
    model.decoder.MLP.L0.weight[:, :6] *= inv
    model.encoder.resunet.input_layer[0].weight *= inv
    model.encoder.resunet.input_skip[0].weight *= inv
    model.decoder.pose_linear.weight *= scale
    model.decoder.pose_linear.bias *= scale
    model.discriminator.seq[0].conv.weight *= inv
    return model


# --- The stage (the loop is train/loop.py) ----------------------------------------------------------------------------
@dataclass
class PoseVAERun:
    """A finished (or stopped) run: the model (eval mode), its log, the official-layout file."""

    model: PoseVAE
    history: TrainHistory
    checkpoint: Path | None
    out_dir: Path
    config: PoseVAETrainConfig
    step: int


def _scaled(windows: PoseWindows | None, scale: float) -> PoseWindows | None:
    from dataclasses import replace

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
        if int(self.train.style.max()) >= model.config.num_classes:
            raise ValueError(f"style ids must be < {model.config.num_classes}, got {int(self.train.style.max())}")
        model.train()
        model.audio_encoder.eval()
        for p in model.audio_encoder.parameters():
            p.requires_grad_(False)  # frozen, as the official Audio2Pose freezes its Wav2Lip encoder
        betas = tuple(config.adam_betas)
        self.model = model
        self.modules = {NETWORK: model}
        self.train_modules = {"encoder": model.encoder, "decoder": model.decoder}
        if config.use_gan:
            self.train_modules["discriminator"] = model.discriminator
        self.optimizers = {
            "main": torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters()),
                                     lr=config.lr, betas=betas),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=config.lr_discriminator,
                                              betas=betas),
        }

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        self.model.audio_encoder.eval()
        train = _with_embeddings(self.model, self.train)  # after a restore: the saved (frozen) encoder's features
        heldout = _with_embeddings(self.model, self.heldout)
        config = self.config
        self.scale = float(config.pose_scale) if config.pose_scale else residual_rms(train) / config.pose_rms
        self.train_units, self.heldout_units = _scaled(train, self.scale), _scaled(heldout, self.scale)

    def extra_state(self) -> dict:
        return {"pose_scale": self.scale}

    def num_examples(self) -> int:
        return len(self.train)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        config, w, idx = self.config, self.train_units, ctx.indices
        pose, emb, style = (x.to(ctx.device) for x in (w.pose[idx], w.audio_emb[idx], w.style[idx]))
        eps = ctx.randn(self.model.config.latent_size)
        cvae = SimpleNamespace(encoder=ctx.module("encoder"), decoder=ctx.module("decoder"))  # DDP-wrapped
        pred, gt, mu, logvar = posevae_forward(cvae, pose, emb, style, eps, config)
        fake = pose[:, :1] + pred  # rho_0 + Delta rho'
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
        loss = pose_total(l_mse, l_kl, l_gan, lambda_mse=config.lambda_mse, lambda_kl=config.lambda_kl,
                          lambda_gan=config.lambda_gan if config.use_gan else 0.0)  # Eq. 13
        ctx.update("main", loss)
        terms.update(loss=loss.item(), mse=l_mse.item(), kl=l_kl.item(), gan=l_gan.item())
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.heldout_units is None or not len(self.heldout_units):
            return None
        calibrate_batchnorm(self.model, self.train_units, self.config, self.config.precise_bn_windows,
                            seed=self.config.seed)
        m = evaluate_posevae(self.model, self.heldout_units, self.config, seed=self.config.seed + 1)
        self.model.audio_encoder.eval()
        return {k: v for k, v in vars(m).items() if not math.isnan(v)}

    def finalize(self, ctx: RunContext) -> None:
        if self.heldout_units is None or not len(self.heldout_units):  # else the last evaluation calibrated them
            calibrate_batchnorm(self.model, self.train_units, self.config, self.config.precise_bn_windows,
                                seed=self.config.seed)

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        fold_pose_scale(self.model, self.scale)  # from here on the model works in raw units
        self.exported = True
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
        fold_pose_scale(stage.model, stage.scale)
    stage.model.eval()
    return PoseVAERun(model=stage.model, history=res.history, checkpoint=res.final, out_dir=Path(out_dir),
                      config=stage.config, step=res.step)


def cli_stage(corpus: Path, preset: str, heldout_clips: int = 1, **overrides) -> PoseVAEStage:
    """``sadtalker-lab train posevae``: 33-frame windows of a corpus folder (the last ``heldout_clips`` held out)."""
    from ..data.windows import corpus_windows, pose_windows_from_dataset

    config = getattr(PoseVAETrainConfig, preset)(**overrides)
    train, heldout = corpus_windows(corpus, pose_windows_from_dataset, config.window + 1, heldout_clips, (4, 16))
    return PoseVAEStage(train, heldout, config)
