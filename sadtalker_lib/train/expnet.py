"""ExpNet distillation (paper Sec. 3.2, supp. B.3 Eq. 2-10), with the switches of the Table 3 ablation.

One step on a batch of 5-frame windows:

    z_blink ~ U(0, 1) per frame                                   (supp. B.3: "generated uniformly and randomly")
    beta^g = ExpNet(mel, beta_0, z_blink)                         (Eq. 2)
    L_distill = MSE(beta^g, beta^lip)                             (Eq. 3)
    P = R_d(beta^g), P' = R_d(beta^lip)   (68 landmarks, differentiable projection of the 3D face)
    L_eye = sum_t |R_t(P) - R_open (1 - z_t)|                     (Eq. 4-7; R_open: the reference face's eye ratio)
    L_lks = lambda_eye L_eye + mean_{t, i not an eye point} ||P - P'||^2          (Eq. 8)
    L_read = CE(viseme labels of the audio, LipReader(mouth of P))             (Eq. 9, lip-reading stand-in)
    L_exp = lambda_distill L_distill + lambda_read L_read + lambda_lks L_lks    (Eq. 10)

Table 3 switches (:data:`EXPNET_ABLATIONS`): ``use_ref_exp=False`` feeds zeros for beta_0 ("w/o beta_0"),
``use_read_loss=False`` drops L_read, ``target="real"`` distils the full ("real") coefficients instead of the
lip-only ones. Checkpoints are written in the official ``auido2exp`` layout (+ optimizer and RNG state).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data.windows import ExpWindows
from ..models.expnet import ExpNet, ExpNetConfig
from ..official import OFFICIAL_NETWORKS
from ..official.io import load_official, save_official_pth
from .lipreader import (
    LIPREADER_FILE,
    LipReader,
    load_lipreader,
    mouth_features,
    save_lipreader,
    train_lipreader,
)
from .expnet_heldout import ExpNetHeldout, ExpNetMetrics, evaluate_expnet, expnet_heldout, heldout_report
from .heldout import HeldoutReport
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, precise_batchnorm, run
from .losses import blink_target_ratio, distill_loss, expnet_total, eye_ratio, landmark_loss, read_loss

__all__ = [
    "ExpNetTrainConfig",
    "EXPNET_ABLATIONS",
    "ExpNetMetrics",
    "ExpNetRun",
    "default_morphable_model",
    "project_expression",
    "expnet_step_losses",
    "train_expnet_lipreader",
    "evaluate_expnet",
    "eye_closing_direction",
    "warm_start_mapping",
    "lip_subspace",
    "calibrate_batchnorm",
    "ExpNetStage",
    "train_expnet",
    "cli_stage",
    "expnet_corpus_windows",
    "expnet_heldout",
    "heldout_report",
]

NETWORK = "audio2exp"
CKPT_STEM = "auido2exp"  # the official file's stem (auido2exp_00300-model.pth, sic)
LR_EXPNET = 2e-5  # Sec. 4.1: "ExpNet, PoseVAE, and FaceRender are trained with a learning rate of 2e-5, 1e-4, 2e-4"
EXPNET_WINDOW = 5  # Sec. 4.1: "ExpNet uses continuous 5 frames to learn"
WARM_STARTS = ("lip_subspace", "reference", "none")  # how Phi_M starts (warm_start_mapping); the paper does not say


@dataclass
class ExpNetTrainConfig(TrainConfig):
    """ExpNet distillation settings; defaults are the paper's (Sec. 4.1, Eq. 8 and 10).

    lambda_*: Eq. 8 / 10 weights. window: frames per training window (5).
    use_ref_exp / use_read_loss / target: the Table 3 ablations ("lip" = lip-only teacher, "real" = full
    coefficients). use_landmark_loss: L_lks on/off. mapping_lr_scale: learning-rate factor for the linear
    Phi_M (1 = the paper; the CPU preset raises it, see ``cpu``). lipreader_path: a file written by
    ``lipreader.save_lipreader`` (None: train the stand-in here, ``lipreader_steps`` steps).
    warm_start: how Phi_M starts (fresh weights only; :func:`warm_start_mapping`), zero audio columns and the
    face model's eye-closing direction d on z_blink in each case: "lip_subspace" (default) beta_0 with its mouth
    replaced by the training targets' average mouth, "reference" beta = beta_0 + z d, "none" torch's random
    init (True / False mean "lip_subspace" / "none"). The paper does not say how Phi_M starts; from a random
    start the single linear layer must first learn to copy beta_0 and to map z to a blink, which Adam at lr 2e-5
    does only after thousands of steps, while the random audio columns add noise of about 0.5 per coefficient
    and the eye loss (weight lambda_lks * lambda_eye = 2) shakes every coefficient; from "reference" it must
    first unlearn the first frame's mouth, which is why that start barely beat beta_0 alone in 300 steps.
    lr_decay_start / lr_final_scale: constant lr, then (from ``lr_decay_start * steps`` on) a linear fall to
    ``lr_final_scale * lr`` at the last step (:meth:`lr_factor`); the CPU preset decays over its second half, so
    the exported weights are not one noisy iterate of a constant-lr run (the paper gives no schedule).
    precise_bn_windows: before every held-out evaluation and the final save, re-estimate the audio encoder's
    BatchNorm statistics on this many training windows (:func:`calibrate_batchnorm`; 0 = keep the running
    averages). With small batches the running averages of a fast-changing network differ from the population
    statistics and the eval-mode network (the one inference uses) is much worse than the training one.
    """

    lr: float = LR_EXPNET
    batch_size: int = 32
    window: int = EXPNET_WINDOW
    lambda_distill: float = 2.0  # Eq. 10
    lambda_read: float = 0.01  # Eq. 10
    lambda_lks: float = 0.01  # Eq. 10
    lambda_eye: float = 200.0  # Eq. 8
    use_ref_exp: bool = True
    use_read_loss: bool = True
    use_landmark_loss: bool = True
    target: str = "lip"
    lipreader_path: str | None = None
    lipreader_steps: int = 400
    mapping_lr_scale: float = 1.0
    warm_start: str | bool = "lip_subspace"
    lr_decay_start: float = 1.0  # fraction of the steps after which lr falls linearly (1: constant, the paper)
    lr_final_scale: float = 0.05  # lr at the last step, as a fraction of lr (when it decays)
    precise_bn_windows: int = 256

    def __post_init__(self):
        super().__post_init__()
        if self.warm_start is True or self.warm_start is False:
            self.warm_start = "lip_subspace" if self.warm_start else "none"
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")
        if self.target not in ("lip", "real"):
            raise ValueError(f"target must be 'lip' (lip-only teacher) or 'real' (full coefficients), "
                             f"got {self.target!r}")

    @classmethod
    def cpu(cls, **changes) -> "ExpNetTrainConfig":
        """Small CPU preset (notebooks, the CLI): 600 steps of 8 windows at lr 3e-4 (15x the paper's 2e-5, so that
        a few minutes of training show), falling linearly over the second half; held-out loss every 50 steps,
        BatchNorm re-estimated on 128 windows."""
        base = dict(steps=600, batch_size=8, lr=3e-4, eval_every=50, checkpoint_every=100, lipreader_steps=300,
                    precise_bn_windows=128, lr_decay_start=0.5)
        return cls(**{**base, **changes})

    @classmethod
    def tiny(cls, **changes) -> "ExpNetTrainConfig":
        """Seconds-long smoke preset (tests, CLI checks): 4 steps of 4 windows at the CPU preset's lr."""
        base = dict(steps=4, batch_size=4, lr=3e-4, eval_every=2, checkpoint_every=2, lipreader_steps=20,
                    precise_bn_windows=8, progress=False)
        return cls(**{**base, **changes})

    def lr_factor(self, step: int) -> float:
        """The lr multiplier of (0-based) optimizer step ``step``: 1, then linear to ``lr_final_scale`` (times any
        ``lr_milestones`` decay of the shared loop settings)."""
        start = self.lr_decay_start * self.steps
        base = super().lr_factor(step)
        if step < start:
            return base
        return base * (1.0 - (1.0 - self.lr_final_scale) * (step - start) / max(1.0, self.steps - 1 - start))

    def ablation(self, name: str) -> "ExpNetTrainConfig":
        """This config with a Table 3 row's switches (:data:`EXPNET_ABLATIONS`)."""
        if name not in EXPNET_ABLATIONS:
            raise KeyError(f"unknown ExpNet ablation {name!r}; known: {sorted(EXPNET_ABLATIONS)}")
        return self.replace(**EXPNET_ABLATIONS[name])


# Table 3 rows (plus "no_ref", beta_0 alone).
EXPNET_ABLATIONS: dict[str, dict] = {
    "full": {},  # lip coefficients + beta_0 + L_read
    "no_ref_no_read": {"use_ref_exp": False, "use_read_loss": False},  # "w/o beta_0 & L_read"
    "no_read": {"use_read_loss": False},  # "w/o L_read"
    "real_coeffs": {"target": "real"},  # "w/ real coeffs."
    "no_ref": {"use_ref_exp": False},
}


# --- The differentiable face (R_d) ------------------------------------------------------------------------------------
def default_morphable_model():
    """The offline ``DefaultMorphableModel`` (a stand-in, not the BFM): ``morphable.fit.default_model``, built once."""
    from ..morphable.fit import default_model

    return default_model()


def project_expression(morphable, exp: torch.Tensor, id_coeff: torch.Tensor | None = None) -> torch.Tensor:
    """R_d for expressions: beta [B, T, 64] (identity [B, 80], frontal pose) -> landmarks [B, T, 68, 2]."""
    from ..morphable.render import project_landmarks

    coeffs = torch.cat([exp, exp.new_zeros(*exp.shape[:-1], 6)], dim=-1)  # [B, T, 70]: angle = trans = 0
    ident = None if id_coeff is None else id_coeff[:, None, :]
    return project_landmarks(morphable, coeffs, ident)


# --- One step's losses ------------------------------------------------------------------------------------------------
def expnet_step_losses(model: ExpNet, batch: ExpWindows, z_blink: torch.Tensor, config: ExpNetTrainConfig,
                       morphable, lipreader: LipReader | None, audio: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Eq. 2-10 on one batch. z_blink [B, T] in [0, 1]. Returns (L_exp, {term: value}, beta^g [B, T, 64]).

    audio: Phi_A of ``batch.mel`` when the caller has it already ([B, T, 512], ``ExpNet.encode_audio``; evaluation
    reuses it for a second pass), else the model runs on the mel windows."""
    b, t = batch.mel.shape[:2]
    ref = batch.ref_exp if config.use_ref_exp else torch.zeros_like(batch.ref_exp)  # Table 3 "w/o beta_0"
    target = batch.exp_lip if config.target == "lip" else batch.exp_real
    if target is None:
        raise ValueError("target='real' needs windows with exp_real (the full coefficients)")
    ref_t, blink = ref[:, None].expand(-1, t, -1), z_blink[..., None]
    pred = model(batch.mel, ref_t, blink) if audio is None else model.map_features(audio, ref_t, blink)  # Eq. 2
    l_distill = distill_loss(pred, target)  # Eq. 3
    terms = {"distill": l_distill.item()}
    l_lks: torch.Tensor | float = 0.0
    l_read: torch.Tensor | float = 0.0
    need_read = config.use_read_loss and lipreader is not None and batch.viseme is not None
    if config.use_landmark_loss or need_read:
        lm_pred = project_expression(morphable, pred, batch.id_coeff)  # P
    if config.use_landmark_loss:
        with torch.no_grad():
            lm_tgt = project_expression(morphable, target, batch.id_coeff)  # P'
            lm_ref = project_expression(morphable, batch.ref_exp[:, None], batch.id_coeff)  # the reference face
            open_ratio = eye_ratio(lm_ref)  # [B, 1]
        ratio = eye_ratio(lm_pred)  # Eq. 4-6, [B, T]
        l_lks, l_eye = landmark_loss(lm_pred, lm_tgt, ratio, blink_target_ratio(z_blink, open_ratio),
                                     config.lambda_eye)  # Eq. 7-8
        terms.update(lks=l_lks.item(), eye=l_eye.item())
    if need_read:
        logits = lipreader(mouth_features(lm_pred))  # C_p [B, T, K]
        l_read = read_loss(logits.reshape(b * t, -1), batch.viseme.reshape(-1))  # Eq. 9
        terms["read"] = l_read.item()
    total = expnet_total(l_distill, l_read, l_lks, lambda_distill=config.lambda_distill,
                         lambda_read=config.lambda_read if need_read else 0.0,
                         lambda_lks=config.lambda_lks if config.use_landmark_loss else 0.0)  # Eq. 10
    terms["loss"] = total.item()
    return total, terms, pred


# --- Lip reader, metrics, initialisation, BatchNorm statistics --------------------------------------------------------
def train_expnet_lipreader(windows: ExpWindows, morphable=None, steps: int = 400, seed: int = 0) -> LipReader:
    """Train the lip-reading stand-in on the teacher's lip-only mouths and the audio's viseme labels."""
    if windows.viseme is None:
        raise ValueError("the windows carry no viseme labels: L_read needs them (or give config.lipreader_path)")
    morphable = morphable or default_morphable_model()
    with torch.no_grad():
        feats = mouth_features(project_expression(morphable, windows.exp_lip, windows.id_coeff))
    return train_lipreader(feats, windows.viseme, steps=steps, seed=seed)


def eye_closing_direction(morphable) -> torch.Tensor:
    """The smallest expression change d [64] that closes the eyes of the mean face to first order.

    With R(beta) the eye ratio (Eq. 4-6) and J = dR/dbeta at beta = 0: d = -R(0) J / ||J||^2, so R(d) ~ 0.
    """
    beta = torch.zeros(1, 1, 64, requires_grad=True)
    r = eye_ratio(project_expression(morphable, beta)).sum()
    (jac,) = torch.autograd.grad(r, beta)
    jac = jac.reshape(-1)
    return (-r.detach() * jac / jac.pow(2).sum().clamp_min(1e-12)).detach()


def lip_subspace(windows: ExpWindows, energy: float = 0.999) -> tuple[torch.Tensor, torch.Tensor]:
    """(U [64, k], mean [64]): the directions in which the lip-only target moves WITHIN a clip, and its mean.

    The target keeps the first frame's expression except the mouth, which follows the audio (Eq. 3), so its
    within-clip variation spans the lip-motion subspace of the coefficient space, whatever the face model (the
    stand-in's designed lip directions, or mixtures of BFM components). U: the top principal directions of the
    target minus its clip mean, enough for ``energy`` of that variance.
    """
    x = windows.exp_lip.reshape(len(windows), -1, windows.exp_lip.shape[-1])  # [N, T, 64]
    clip = windows.clip
    means = torch.zeros(int(clip.max()) + 1, x.shape[-1]).index_add_(0, clip, x.mean(1))
    counts = torch.zeros(int(clip.max()) + 1).index_add_(0, clip, torch.ones(len(clip)))
    dev = (x - (means / counts.clamp_min(1)[:, None])[clip][:, None]).reshape(-1, x.shape[-1]).double()
    _, s, vh = torch.linalg.svd(dev, full_matrices=False)
    share = (s ** 2).cumsum(0) / (s ** 2).sum().clamp_min(1e-30)
    k = int((share < energy).sum()) + 1
    return vh[:k].T.float(), x.reshape(-1, x.shape[-1]).mean(0)


@torch.no_grad()
def warm_start_mapping(model: ExpNet, morphable, windows: ExpWindows | None = None) -> ExpNet:
    """Phi_M (``mapping1``: Linear([audio 512 | beta_0 64 | z 1] -> 64)) set so that beta = B beta_0 + c + z d.

    The z column is the eye-closing direction d (:func:`eye_closing_direction`), the audio block zero
    ("zero-init the last layer"; the audio encoder gets gradients from the first update of these columns on).
    Without ``windows``: B = I, c = 0 (the official code's commented-out ``+ ref`` residual, expressed as an
    initialisation: the architecture and checkpoint layout stay official). With training ``windows``:
    B = I - U U^T and c = U U^T mean(beta^lip), U the target's lip subspace (:func:`lip_subspace`): beta_0 with
    its mouth replaced by the average mouth. beta_0 is the first frame, caught mid-word as often as not, while
    the target's mouth follows the audio only; starting from B = I the network would first have to unlearn the
    first frame's mouth, O(1) changes of single weights that Adam makes at about ``lr`` per step (hundreds of
    steps at the CPU preset, thousands at the paper's lr) while the audio columns learn the mouth on top of it.
    """
    a, e = model.config.audio_dim, model.config.exp_dim
    with torch.enable_grad():
        d = eye_closing_direction(morphable)
    w = model.mapping1.weight
    w.zero_()
    w[:, a:a + e] = torch.eye(e)
    w[:, a + e] = d
    model.mapping1.bias.zero_()
    if windows is not None:
        u, mean = lip_subspace(windows)
        proj = u @ u.T  # [64, 64]
        w[:, a:a + e] -= proj
        model.mapping1.bias.copy_(proj @ mean)
    return model


def calibrate_batchnorm(model: ExpNet, windows: ExpWindows, n_windows: int = 256, batch_size: int = 64,
                        seed: int = 0) -> ExpNet:
    """``loop.precise_batchnorm`` for ExpNet on ``n_windows`` training windows (a fixed seeded subset)."""
    if n_windows <= 0:
        return model
    idx = torch.as_tensor(np.random.default_rng([seed, 0xB7]).permutation(len(windows))[:n_windows])
    t = windows.window
    dev = next(model.parameters()).device  # windows are held on the CPU; the model may be on a GPU

    def run():
        for s in range(0, len(idx), batch_size):
            part = windows[idx[s:s + batch_size]].to(dev)
            model(part.mel, part.ref_exp[:, None].expand(-1, t, -1), torch.zeros(len(part), t, 1, device=dev))

    precise_batchnorm(model, run)
    return model


# --- The stage (the loop is train/loop.py) ----------------------------------------------------------------------------
@dataclass
class ExpNetRun:
    """A finished (or stopped) run: the model (eval mode), its log, the official-layout file, the lip reader."""

    model: ExpNet
    history: TrainHistory
    checkpoint: Path | None
    out_dir: Path | None
    config: ExpNetTrainConfig
    lipreader: LipReader | None
    step: int
    heldout: ExpNetHeldout | None = None  # the numbers of heldout.json (expnet_heldout) when the run finished


class ExpNetStage(Stage):
    """ExpNet distillation as a :class:`~sadtalker_lib.train.loop.Stage` (arguments as :func:`train_expnet`)."""

    name, stem = "ExpNet", CKPT_STEM

    def __init__(self, train: ExpWindows, heldout: ExpWindows | None = None, config: ExpNetTrainConfig | None = None,
                 *, init: ExpNet | str | os.PathLike | None = None, morphable=None, lipreader: LipReader | None = None,
                 split: dict | None = None):
        self.split = split  # what heldout.json says the numbers were measured on (CorpusSplit.to_json())
        self.config = config or ExpNetTrainConfig()
        if train.window != self.config.window:
            raise ValueError(f"the windows have {train.window} frames, config.window is {self.config.window}")
        self.train, self.heldout, self.init, self.lipreader = train, heldout, init, lipreader
        self.morphable = morphable or default_morphable_model()
        self.heldout_result: ExpNetHeldout | None = None  # set by heldout_report at the end of a run
        self.eval_predictions: torch.Tensor | None = None  # held-out predictions of the current weights [N, T, 64]

    def before_run(self, out_dir: Path | None) -> None:
        self.lipreader = _lipreader_for(self.config, self.train, out_dir, self.morphable, self.lipreader)

    def build(self, ctx: RunContext) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        model = ExpNet(ExpNetConfig())
        if isinstance(self.init, ExpNet):
            model.load_state_dict(self.init.state_dict())
        elif self.init is not None:
            load_official(model, NETWORK, self.init)
        elif config.warm_start != "none":
            # the subspace of the target trained on ("w/ real coeffs.": the full coefficients' within-clip motion)
            target = self.train if config.target == "lip" else replace(self.train, exp_lip=self.train.exp_real)
            warm_start_mapping(model, self.morphable, target if config.warm_start == "lip_subspace" else None)
        model.train()
        groups = [{"params": list(model.audio_encoder.parameters())},
                  {"params": list(model.mapping1.parameters()), "lr": config.lr * config.mapping_lr_scale}]
        self.model = model
        self.modules = {NETWORK: model}
        self.train_modules = {"expnet": model}
        if self.lipreader is not None:
            self.lipreader.to(ctx.device)
        if ctx.device.type != "cpu" and isinstance(self.morphable, torch.nn.Module):
            import copy

            self.morphable = copy.deepcopy(self.morphable).to(ctx.device)  # the shared CPU instance stays
        self.optimizers = {"main": torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.adam_betas))}

    def num_examples(self) -> int:
        return len(self.train)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        self.eval_predictions = None  # the weights change: the last evaluation's predictions are stale
        batch = self.train[ctx.indices].to(ctx.device)
        z_blink = ctx.rand(self.config.window)
        loss, terms, _ = expnet_step_losses(ctx.module("expnet"), batch, z_blink, self.config, self.morphable,
                                            self.lipreader)
        ctx.update("main", loss)
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.heldout is None or not len(self.heldout):
            return None
        calibrate_batchnorm(self.model, self.train, self.config.precise_bn_windows, seed=self.config.seed)
        m, self.eval_predictions = evaluate_expnet(self.model, self.heldout, self.config, self.morphable,
                                                   self.lipreader, seed=self.config.seed + 1, with_predictions=True)
        return {k: v for k, v in vars(m).items() if not math.isnan(v)}

    def finalize(self, ctx: RunContext) -> None:
        if self.heldout is None or not len(self.heldout):  # else the evaluation at the last step calibrated them
            calibrate_batchnorm(self.model, self.train, self.config.precise_bn_windows, seed=self.config.seed)

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_official_pth({NETWORK: self.model}, out_dir / OFFICIAL_NETWORKS[NETWORK].pth_file,
                                 epoch=self.config.steps)

    def heldout_report(self, ctx: RunContext) -> HeldoutReport | None:
        """Trained vs beta0_only / mean_mouth / teacher on the held-out windows (``expnet_heldout``)."""
        if self.heldout is None or not len(self.heldout):
            return None
        # the evaluation at the last step predicted the held-out windows with these weights: reused, not rerun
        self.heldout_result = expnet_heldout(self.model, self.heldout, self.morphable, self.config.use_ref_exp,
                                             self.train, trained=self.eval_predictions)
        return heldout_report(self.heldout_result, self.split)


def _lipreader_for(config: ExpNetTrainConfig, train: ExpWindows, out_dir: Path | None, morphable,
                   given: LipReader | None) -> LipReader | None:
    from accelerate import PartialState

    if not config.use_read_loss:
        return given
    if given is not None:
        return given
    if config.lipreader_path:
        return load_lipreader(config.lipreader_path)
    saved = None if out_dir is None else out_dir / LIPREADER_FILE
    if saved is not None and saved.is_file():  # a resumed run reuses the reader it trained at its start
        return load_lipreader(saved)
    if train.viseme is None:
        return None
    reader = train_expnet_lipreader(train, morphable, steps=config.lipreader_steps, seed=config.seed)
    if saved is not None and PartialState().is_main_process:
        save_lipreader(reader, saved, source="trained-here")
    return reader


def train_expnet(train: ExpWindows, heldout: ExpWindows | None = None, config: ExpNetTrainConfig | None = None,
                 out_dir: str | os.PathLike | None = "runs/expnet", *, init: ExpNet | str | os.PathLike | None = None,
                 resume: bool = True, morphable=None, lipreader: LipReader | None = None,
                 stop_after: int | None = None) -> ExpNetRun:
    """Distil ExpNet on ``train`` windows, logging the held-out loss; resumable (``loop.run`` on :class:`ExpNetStage`).

    out_dir receives ``log.csv``, ``checkpoints/auido2exp_<step>-model.pth`` (official layout + optimizer + RNG
    state, the last ``keep_checkpoints``), the trained-here lip reader, and at the end
    ``auido2exp_00300-model.pth`` (the official file name, so the folder works as a checkpoint folder for
    ``load_official`` / the pipeline; its ``epoch`` key holds the step count).
    init: a starting ExpNet or official checkpoint (default: fresh weights seeded with ``config.seed``).
    resume: continue from the newest checkpoint in ``out_dir`` when there is one.
    stop_after: stop once this many steps are done, without the final save (simulates an interrupted run).
    """
    stage = ExpNetStage(train, heldout, config, init=init, morphable=morphable, lipreader=lipreader)
    res = run(stage, out_dir, resume=resume, stop_after=stop_after)
    stage.model.eval()
    return ExpNetRun(model=stage.model, history=res.history, checkpoint=res.final, out_dir=res.out_dir,
                     config=stage.config, lipreader=stage.lipreader, step=res.step,
                     heldout=stage.heldout_result)


def expnet_corpus_windows(corpus: str | os.PathLike, window: int = EXPNET_WINDOW, heldout_fraction: float = 0.25,
                          seed: int = 0, train_stride: int = 2):
    """(train, held-out, split) ExpNet windows of a corpus folder, split by person (``corpus.splits.identity_split``:
    whole identities held out where there are several, else the last clips). Held-out windows tile each clip
    (stride = window), so the per-clip measures of ``expnet_heldout`` see every frame once, in order. With one
    person in the corpus, ``round(heldout_fraction * clips)`` clips are held out (same person: the split says so)."""
    from ..data.corpus import CorpusDataset, load_index
    from ..data.corpus.splits import identity_split
    from ..data.windows import exp_windows_from_dataset

    n_clips = len(load_index(corpus)["clips"])
    split = identity_split(corpus, heldout_fraction=heldout_fraction, seed=seed,
                           min_heldout_clips=max(1, round(heldout_fraction * n_clips)))  # one person: the last clips
    train = exp_windows_from_dataset(CorpusDataset(corpus, window=window, stride=train_stride, clips=split.train))
    held = exp_windows_from_dataset(CorpusDataset(corpus, window=window, stride=window, clips=split.heldout))
    return train, held, split


def cli_stage(corpus: Path, preset: str, heldout_fraction: float = 0.25, **overrides) -> ExpNetStage:
    """``sadtalker-lab train expnet``: windows of a corpus folder, identity-disjoint held-out clips
    (:func:`expnet_corpus_windows`); the run writes ``heldout.json`` (:meth:`ExpNetStage.heldout_report`)."""
    config = getattr(ExpNetTrainConfig, preset)(**overrides)
    train, heldout, split = expnet_corpus_windows(corpus, config.window, heldout_fraction, config.seed)
    return ExpNetStage(train, heldout, config, split=split.to_json())
