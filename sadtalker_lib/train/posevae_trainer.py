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
from typing import Mapping, Sequence

import numpy as np
import torch

from ..official.io import load_official, official_state_dict, read_checkpoint, save_official_pth
from ..models.posevae import PoseVAE, PoseVAEConfig
from ..official import OFFICIAL_NETWORKS
from .common import (
    LR_POSEVAE,
    POSEVAE_WINDOW,
    CSVLogger,
    TrainConfig,
    TrainHistory,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    precise_batchnorm,
    progress,
    restore_training_state,
    save_training_checkpoint,
    step_generator,
    step_rng,
)
from .losses import gan_discriminator_loss, gan_generator_loss, kl_loss, mse_loss, pose_total
from .windows import PoseWindows

__all__ = [
    "PoseVAETrainConfig",
    "POSEVAE_ABLATIONS",
    "load_audio_encoder",
    "audio_embeddings",
    "posevae_forward",
    "PoseVAEHeldout",
    "evaluate_posevae",
    "PoseClipMetrics",
    "evaluate_posevae_clips",
    "calibrate_batchnorm",
    "residual_rms",
    "fold_pose_scale",
    "PoseVAERun",
    "train_posevae",
]

NETWORK = "audio2pose"
CKPT_STEM = "auido2pose"  # the official file's stem (auido2pose_00140-model.pth, sic)


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


# ---------------------------------------------------------------------------------------------
# Audio features
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Forward pass and losses
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Whole-clip metrics: diversity and beat alignment (Table 4)
# ---------------------------------------------------------------------------------------------
@dataclass
class PoseClipMetrics:
    """Per-clip means over generated clips. diversity: mean over angles of the std over time (radians,
    ``eval.diversity``); beat_align: Bailando's Beat Align Score of the head angles against the speech
    (``eval.beat_align``); real_*: the same for the corpus motion of those clips; style: how styles were picked."""

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
        real = coeffs[:, 64:67]
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
    """``common.precise_batchnorm`` for the CVAE (encoder and decoder; the frozen audio encoder and the
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


# ---------------------------------------------------------------------------------------------
# Pose units
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
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


def _prune(out_dir: Path, keep: int) -> None:
    for _, old in list_checkpoints(out_dir, CKPT_STEM)[:-keep]:
        old.unlink()


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
    config = config or PoseVAETrainConfig()
    if train.window != config.window:
        raise ValueError(f"the windows have {train.window} frames after rho_0, config.window is {config.window}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)

    torch.manual_seed(config.seed)
    model = PoseVAE(PoseVAEConfig(seq_len=config.window, logvar_from_means_layer=config.official_logvar))
    if isinstance(init, PoseVAE):
        model.load_state_dict(init.state_dict())
    elif init is not None:
        load_official(model, NETWORK, init)
    elif config.audio_encoder:
        load_audio_encoder(model, config.audio_encoder)
    if int(train.style.max()) >= model.config.num_classes:
        raise ValueError(f"style ids must be < {model.config.num_classes}, got {int(train.style.max())}")
    model.train()
    model.audio_encoder.eval()
    for p in model.audio_encoder.parameters():
        p.requires_grad_(False)  # frozen, as the official Audio2Pose freezes its Wav2Lip encoder
    opt_g = torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters()), lr=config.lr,
                             betas=tuple(config.adam_betas))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=config.lr_discriminator,
                             betas=tuple(config.adam_betas))
    optimizers = {"main": opt_g, "discriminator": opt_d}

    start = 0
    ckpt = latest_checkpoint(out_dir, CKPT_STEM) if resume else None
    if ckpt is not None:
        start = int(restore_training_state(ckpt, {NETWORK: model}, optimizers)["step"])
        model.audio_encoder.eval()
    logger = CSVLogger(out_dir, resume_step=start if ckpt is not None else None)
    train = _with_embeddings(model, train)  # after a restore: the saved (frozen) encoder's features
    heldout = _with_embeddings(model, heldout)
    scale = float(config.pose_scale) if config.pose_scale else residual_rms(train) / config.pose_rms
    train = _scaled(train, scale)
    heldout = _scaled(heldout, scale)

    def heldout_eval(step: int):
        if heldout is not None and len(heldout):
            calibrate_batchnorm(model, train, config, config.precise_bn_windows, seed=config.seed)
            m = evaluate_posevae(model, heldout, config, seed=config.seed + 1)
            model.audio_encoder.eval()
            logger.log(step, "heldout", {k: v for k, v in vars(m).items() if not math.isnan(v)})

    if start == 0:
        heldout_eval(0)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    n = len(train)
    for step in progress(range(start, end), config.progress, desc="PoseVAE", initial=start, total=config.steps):
        idx = torch.as_tensor(step_rng(config.seed, step).choice(n, size=min(config.batch_size, n), replace=False))
        pose, emb, style = train.pose[idx], train.audio_emb[idx], train.style[idx]
        eps = torch.randn(len(idx), model.config.latent_size, generator=step_generator(config.seed, step))
        pred, gt, mu, logvar = posevae_forward(model, pose, emb, style, eps, config)
        fake = pose[:, :1] + pred  # rho_0 + Delta rho'
        real = pose[:, 1:]
        terms: dict[str, float] = {}
        if config.use_gan:  # discriminator step first (Eq. 12, max_D)
            b = len(idx)
            # real and fake go through D as ONE batch: its BatchNorm layers must not normalise each set on its
            # own (that would hide exactly the differences in scale a collapsed generator shows)
            d_out = model.discriminator(torch.cat([real, fake.detach()]))
            l_d = gan_discriminator_loss(d_out[:b], d_out[b:])
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
            terms["d_loss"] = l_d.item()
            l_gan = gan_generator_loss(model.discriminator(torch.cat([real, fake]))[b:])  # Eq. 12, min_G
        else:
            l_gan = torch.zeros(())
        l_mse, l_kl = mse_loss(pred, gt), kl_loss(mu, logvar)  # Eq. 11, KL
        loss = pose_total(l_mse, l_kl, l_gan, lambda_mse=config.lambda_mse, lambda_kl=config.lambda_kl,
                          lambda_gan=config.lambda_gan if config.use_gan else 0.0)  # Eq. 13
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        terms.update(loss=loss.item(), mse=l_mse.item(), kl=l_kl.item(), gan=l_gan.item())
        done = step + 1
        logger.log(done, "train", terms)
        if done % config.eval_every == 0 or done == config.steps:
            heldout_eval(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save_training_checkpoint(checkpoint_path(out_dir, CKPT_STEM, done), {NETWORK: model}, optimizers, done,
                                     config, extra={"pose_scale": scale})
            _prune(out_dir, config.keep_checkpoints)
    logger.close()
    final = None
    if end == config.steps:
        if heldout is None or not len(heldout):  # else the evaluation at done == steps calibrated them
            calibrate_batchnorm(model, train, config, config.precise_bn_windows, seed=config.seed)
        save_training_checkpoint(checkpoint_path(out_dir, CKPT_STEM, config.steps), {NETWORK: model}, optimizers,
                                 config.steps, config, extra={"pose_scale": scale})
        _prune(out_dir, config.keep_checkpoints)
        fold_pose_scale(model, scale)  # from here on the model works in raw units
        final = save_official_pth({NETWORK: model}, out_dir / OFFICIAL_NETWORKS[NETWORK].pth_file, epoch=config.steps)
    else:
        fold_pose_scale(model, scale)
    model.eval()
    return PoseVAERun(model=model, history=logger.history, checkpoint=final, out_dir=out_dir, config=config, step=end)
