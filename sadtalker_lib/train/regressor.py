"""Stage: the coefficient regressor (paper Sec. 3.1, R_e of Fig. 3), trained on coefficients fitted here.

The official regressor is Deep3DFaceRecon's ResNet-50, trained without 3-D labels by a photometric loss through a
differentiable renderer. When those weights are absent, this stage trains one from the workbench's own fits
(data: ``data.portraits``, :class:`RegressorData`). One step on a batch:

    c = R_e(crop / 255)                                                         [B, 257]
    L_coef = sum_g w_g mean (c_g - c*_g)^2          g in exp, angle, trans, id (tex, gamma: the fit has none)
    L_lm   = w_lm mean_i v_i ||R_d(c)_i - q_i||^2   (pixels at 224; R_d = render.project_landmarks)
    L      = L_coef + L_lm

R_d is the differentiable projection of the 68 model landmarks, q the detected (dlib) landmarks in the crop, so
the landmark term measures what a fit measures and lets the network trade coefficient errors that do not move
the face against those that do. ``w_lm`` and the landmark weights ``v`` (20 on the nose bridge and the inner
lips) are Deep3DFaceRecon's (``--w_lm 1.6e-3``, ``models/losses.py landmark_loss``), as is the zero start of the
output heads (``ReconNetWrapper``); here the head biases then start at the training set's mean coefficients.

Coefficients are those of the morphable model used for fitting (the offline ``DefaultMorphableModel`` by
default): a regressor trained here on the stand-in predicts stand-in coefficients, not BFM ones, and says so
in the ``sadtalker_lab.json`` written beside it. :func:`train_regressor` logs a CSV (train losses, held-out
landmark error in px at 224), writes resumable checkpoints in the official ``epoch_20.pth`` layout, and at the
end the ``face_3drecon`` section of ``SadTalker_V0.0.2_256.safetensors`` with the config
(``registry.save_networks``), so ``TalkingHeadPipeline.from_checkpoints`` / :func:`load_regressor` read it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..coeffs import COEFF_257_SLICES, NUM_LANDMARKS
from ..data.portraits import RegressorData
from ..models.regressor import CoefficientRegressor, RegressorConfig
from .heldout import HeldoutMetric, HeldoutReport
from .loop import RunContext, Stage, StepContext, TrainConfig, TrainHistory, run

__all__ = [
    "DEEP3D_LANDMARK_WEIGHTS",
    "RegressorTrainConfig",
    "RegressorMetrics",
    "RegressorRun",
    "regressor_losses",
    "landmark_error_px",
    "evaluate_regressor",
    "evaluate_coefficients",
    "predict",
    "init_heads",
    "RegressorStage",
    "train_regressor",
    "cli_stage",
    "save_regressor",
    "load_regressor",
]

NETWORK = "face_3drecon"
CKPT_STEM = "face_3drecon"

# Deep3DFaceRecon models/losses.py landmark_loss: weight 20 on points 28-30 (nose bridge) and on the last 8
# (inner lips), 1 elsewhere; the loss is sum_i w_i ||p_i - q_i||^2 / (B * 68). Its default --w_lm is 1.6e-3.
DEEP3D_LANDMARK_WEIGHTS: tuple[float, ...] = tuple(20.0 if (28 <= i < 31 or i >= 60) else 1.0
                                                   for i in range(NUM_LANDMARKS))
DEEP3D_W_LM = 1.6e-3
DEEP3D_LR = 1e-4  # Deep3DFaceRecon options/train_options.py --lr


@dataclass
class RegressorTrainConfig(TrainConfig):
    """Regressor training settings. Defaults: the official backbone (ResNet-50, width 64) and Deep3DFaceRecon's
    learning rate (1e-4), landmark weight w_lm (1.6e-3) and landmark weights (``landmark_weighting="deep3d"``;
    "uniform" gives every point 1).

    w_exp / w_angle / w_trans / w_id: the per-group weights of the coefficient loss (this project's choice: an
    angle error of 0.1 rad or a shift of 0.1 units moves the landmarks by about 10 px at 224, hence the large
    pose weights; identity matters least for SadTalker, which keeps exp, angle and trans).
    init_mean: start the zeroed output heads' biases at the training set's mean coefficients.
    """

    lr: float = DEEP3D_LR
    batch_size: int = 32
    steps: int = 5000
    eval_every: int = 250
    checkpoint_every: int = 1000
    backbone: str = "resnet50"
    width: int = 64
    w_exp: float = 1.0
    w_angle: float = 100.0
    w_trans: float = 100.0
    w_id: float = 0.1
    w_lm: float = DEEP3D_W_LM
    landmark_weighting: str = "deep3d"
    init_mean: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.landmark_weighting not in ("deep3d", "uniform"):
            raise ValueError(f"landmark_weighting must be 'deep3d' or 'uniform', got {self.landmark_weighting!r}")
        RegressorConfig(backbone=self.backbone, width=self.width)  # validates the backbone name

    @classmethod
    def paper(cls, **changes) -> "RegressorTrainConfig":
        """The official backbone and Deep3DFaceRecon's hyper-parameters (same as the defaults)."""
        return cls(**changes)

    @classmethod
    def cpu(cls, **changes) -> "RegressorTrainConfig":
        """Small CPU preset (notebooks, CI): ResNet-18 at width 16, 150 steps of 16 crops, lr 1e-3 (10x
        Deep3DFaceRecon's, so that a minute shows), held-out error every 25 steps; one torch thread."""
        base = dict(backbone="resnet18", width=16, steps=150, batch_size=16, lr=1e-3, eval_every=25,
                    checkpoint_every=50, num_threads=1)
        return cls(**{**base, **changes})

    @classmethod
    def tiny(cls, **changes) -> "RegressorTrainConfig":
        """Test preset: the CPU preset at width 8, 80 steps, held-out error every 40 steps, no tqdm bar."""
        return cls.cpu(**{**dict(width=8, steps=80, eval_every=40, checkpoint_every=40, progress=False), **changes})

    def regressor_config(self) -> RegressorConfig:
        return RegressorConfig(backbone=self.backbone, width=self.width)

    def landmark_weights(self) -> torch.Tensor:
        w = DEEP3D_LANDMARK_WEIGHTS if self.landmark_weighting == "deep3d" else (1.0,) * NUM_LANDMARKS
        return torch.tensor(w, dtype=torch.float32)


@dataclass
class RegressorMetrics:
    """Held-out quality: landmark_px = mean distance (px at 224) between the landmarks of the predicted
    coefficients and the detected ones; fit_px = the same for the fitted targets (the floor); angle_deg = mean
    absolute angle error vs the targets; exp_rmse / trans_rmse / id_rmse = coefficient errors; coeff_rmse = the
    RMSE over the 70 coefficients SadTalker keeps (64 expression, 3 angles, 3 translations)."""

    landmark_px: float
    fit_px: float
    angle_deg: float
    exp_rmse: float
    trans_rmse: float
    id_rmse: float
    coeff_rmse: float = float("nan")


@dataclass
class RegressorRun:
    """What :func:`train_regressor` returns. before / after: held-out metrics at step 0 and at the end
    (None without held-out data); mean_baseline: the held-out metrics of always predicting the training mean."""

    model: CoefficientRegressor
    history: TrainHistory
    out_dir: Path
    config: RegressorTrainConfig
    step: int
    checkpoint: Path | None = None
    before: RegressorMetrics | None = None
    after: RegressorMetrics | None = None
    mean_baseline: RegressorMetrics | None = None


def _images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 224, 224, 3] -> float [B, 3, 224, 224] in [0, 1] (as ``TalkingHeadPipeline.regress`` feeds it).

    Made contiguous: the permuted (channels-last strided) tensor crashes the CPU backward of the convolutions in
    the pinned torch ("double free or corruption"), while the forward alone is fine.
    """
    return (torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0).contiguous()


def _project_rows(morphable, coeffs: torch.Tensor) -> torch.Tensor:
    """R_d: coefficients [B, 257] -> landmarks [B, 68, 2] (x, row) at 224, on the device of ``coeffs`` (the face
    model's tensors stay on the CPU; the round trip is differentiable)."""
    from ..morphable.render import project_landmarks

    return project_landmarks(morphable, coeffs.cpu(), image_rows=True).to(coeffs.device)


def regressor_losses(pred: torch.Tensor, target: torch.Tensor, landmarks: torch.Tensor,
                     config: RegressorTrainConfig, morphable) -> tuple[torch.Tensor, dict[str, float]]:
    """L = sum_g w_g MSE(pred_g, target_g) + w_lm mean_i v_i ||R_d(pred)_i - q_i||^2 -> (loss, logged terms).

    pred / target [B, 257], landmarks q [B, 68, 2] (x, row) at 224.
    """
    terms: dict[str, torch.Tensor] = {}
    total = pred.new_zeros(())
    for g in ("exp", "angle", "trans", "id"):
        s = COEFF_257_SLICES[g]
        terms[f"mse_{g}"] = ((pred[:, s] - target[:, s]) ** 2).mean()
        total = total + getattr(config, f"w_{g}") * terms[f"mse_{g}"]
    lm = _project_rows(morphable, pred)
    d2 = ((lm - landmarks) ** 2).sum(-1)  # [B, 68]
    terms["lm"] = (d2 * config.landmark_weights().to(d2)).mean()
    total = total + config.w_lm * terms["lm"]
    logged = {k: float(v.detach()) for k, v in terms.items()}
    logged["landmark_px"] = float(d2.detach().sqrt().mean())
    logged["loss"] = float(total.detach())
    return total, logged


def landmark_error_px(coeffs: np.ndarray | torch.Tensor, landmarks: np.ndarray, morphable=None) -> np.ndarray:
    """Mean landmark distance [N] in px at 224 between coefficients [N, 257] and landmarks [N, 68, 2] (x, row)."""
    from ..morphable.fit import default_model

    morphable = morphable or default_model()
    with torch.no_grad():
        lm = _project_rows(morphable, torch.as_tensor(np.asarray(coeffs, np.float32)))
        return (lm - torch.as_tensor(landmarks)).norm(dim=-1).mean(-1).numpy()


def evaluate_coefficients(coeffs: np.ndarray, data: RegressorData, morphable=None) -> RegressorMetrics:
    """:class:`RegressorMetrics` of predicted coefficients [N, 257] against ``data``."""
    c = np.asarray(coeffs, np.float32)
    rmse = lambda g: float(np.sqrt(((c[:, COEFF_257_SLICES[g]] - data.coeffs[:, COEFF_257_SLICES[g]]) ** 2).mean()))  # noqa: E731
    a = COEFF_257_SLICES["angle"]
    return RegressorMetrics(
        landmark_px=float(landmark_error_px(c, data.landmarks, morphable).mean()),
        fit_px=float(data.fit_error_px.mean()),
        angle_deg=float(np.degrees(np.abs(c[:, a] - data.coeffs[:, a])).mean()),
        exp_rmse=rmse("exp"), trans_rmse=rmse("trans"), id_rmse=rmse("id"),
        coeff_rmse=float(np.sqrt(((_kept(c) - _kept(data.coeffs)) ** 2).mean())),
    )


def _kept(coeffs: np.ndarray) -> np.ndarray:
    """[N, 257] -> [N, 70]: the expression, angle and translation coefficients (what SadTalker keeps)."""
    return np.concatenate([coeffs[:, COEFF_257_SLICES[g]] for g in ("exp", "angle", "trans")], axis=1)


@torch.no_grad()
def predict(model: CoefficientRegressor, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Aligned crops uint8 [N, 224, 224, 3] -> coefficients [N, 257] (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(_images_tensor(images[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 257), np.float32)


def evaluate_regressor(model: CoefficientRegressor, data: RegressorData, morphable=None) -> RegressorMetrics:
    """Held-out metrics of ``model`` on ``data`` (eval mode)."""
    return evaluate_coefficients(predict(model, data.images), data, morphable)


def init_heads(model: CoefficientRegressor, mean_coeffs: np.ndarray | None = None) -> CoefficientRegressor:
    """Zero the output heads (Deep3DFaceRecon ``ReconNetWrapper``) and, when given, set their biases to the
    mean coefficients [257], so the untrained network predicts the mean face of the training set."""
    mean = None if mean_coeffs is None else torch.as_tensor(np.asarray(mean_coeffs, np.float32))
    start = 0
    with torch.no_grad():
        for head in model.final_layers:
            n = head.out_channels
            head.weight.zero_()
            head.bias.copy_(mean[start:start + n] if mean is not None else torch.zeros(n))
            start += n
    return model


class RegressorStage(Stage):
    """The regressor as a :class:`~sadtalker_lib.train.loop.Stage` (arguments as :func:`train_regressor`)."""

    name, stem = "regressor", CKPT_STEM

    def __init__(self, train: RegressorData, heldout: RegressorData | None = None,
                 config: RegressorTrainConfig | None = None, *,
                 init: CoefficientRegressor | str | os.PathLike | None = None, morphable=None, size: int = 256,
                 split: dict | None = None):
        from ..morphable.fit import default_model

        self.split = split  # what heldout.json says the numbers were measured on (CorpusSplit.to_json())
        self.config = config or RegressorTrainConfig()
        if len(train) == 0:
            raise ValueError("the regressor training set is empty")
        self.morphable = morphable or default_model()
        if train.model_name and train.model_name != self.morphable.name:
            raise ValueError(f"the training coefficients were fitted with '{train.model_name}', but the landmark "
                             f"loss would use '{self.morphable.name}'; pass the same morphable model")
        self.train, self.init, self.size = train, init, size
        self.heldout = heldout if heldout is not None and len(heldout) else None
        self.before: RegressorMetrics | None = None
        self.resumed = False

    def build(self, ctx: RunContext) -> None:
        from ..official.io import load_official

        config = self.config
        torch.manual_seed(config.seed)
        model = CoefficientRegressor(config.regressor_config())
        if isinstance(self.init, CoefficientRegressor):
            model.load_state_dict(self.init.state_dict())
        elif self.init is not None:
            load_official(model, NETWORK, self.init)
        else:
            init_heads(model, self.train.coeffs.mean(0) if config.init_mean else None)
        model.train()
        self.model = model
        self.modules = {NETWORK: model}
        self.train_modules = {"regressor": model}
        self.optimizers = {"main": torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.adam_betas))}

    def start(self, ctx: RunContext, checkpoint: dict | None) -> None:
        self.resumed = checkpoint is not None
        self.images = _images_tensor(self.train.images)  # [N, 3, 224, 224]
        self.coeffs = torch.from_numpy(self.train.coeffs)
        self.landmarks = torch.from_numpy(self.train.landmarks)

    def num_examples(self) -> int:
        return len(self.train)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        idx = ctx.indices
        gain = 0.9 + 0.2 * ctx.rand(1, 1, 1)  # brightness jitter per crop (seeded by the step: resumable)
        x = (self.images[idx].to(ctx.device) * gain).clamp(0, 1)
        loss, terms = regressor_losses(ctx.module("regressor")(x), self.coeffs[idx].to(ctx.device),
                                       self.landmarks[idx].to(ctx.device), self.config, self.morphable)
        ctx.update("main", loss)
        return terms

    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if self.heldout is None:
            return None
        metrics = evaluate_regressor(self.model, self.heldout, self.morphable)
        if self.before is None and not self.resumed:  # the first evaluation of a fresh run: step 0
            self.before = metrics
        return vars(metrics)

    def export(self, ctx: RunContext, out_dir: Path | None) -> Path | None:
        if out_dir is None or not ctx.is_main:
            return None
        return save_regressor(out_dir, self.model, size=self.size, morphable_name=self.morphable.name)

    def heldout_report(self, ctx: RunContext) -> HeldoutReport | None:
        """Held-out coefficient and landmark errors, trained vs ``mean_coefficients`` (the training set's mean:
        what the untrained network, heads zero with the mean as bias, predicts)."""
        if self.heldout is None:
            return None
        trained = evaluate_regressor(self.model, self.heldout, self.morphable)
        mean = evaluate_coefficients(np.repeat(self.train.coeffs.mean(0, keepdims=True), len(self.heldout), 0),
                                     self.heldout, self.morphable)
        label = f"{self.morphable.name} coefficients fitted here"
        units = {"coeff_rmse": "exp + angle + trans (70)", "exp_rmse": "64 expression coefficients",
                 "angle_deg": "degrees", "trans_rmse": "3 translations", "landmark_px": "px at 224"}
        names = {"coeff_rmse": "coefficient_rmse", "exp_rmse": "expression_rmse", "angle_deg": "angle_error_deg",
                 "trans_rmse": "translation_rmse", "landmark_px": "landmark_error_px"}
        metrics = {names[k]: HeldoutMetric(getattr(trained, k), {"mean_coefficients": getattr(mean, k)}, True,
                                           f"{units[k]}; {label}") for k in names}
        metrics["landmark_error_px"].baselines["fit_floor"] = trained.fit_px
        split = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (self.split or {}).items()}
        return HeldoutReport("regressor", metrics, split)


def train_regressor(train: RegressorData, heldout: RegressorData | None = None,
                    config: RegressorTrainConfig | None = None, out_dir: str | os.PathLike = "runs/regressor", *,
                    init: CoefficientRegressor | str | os.PathLike | None = None, resume: bool = True,
                    morphable=None, stop_after: int | None = None, size: int = 256) -> RegressorRun:
    """Train the regressor on ``train``, logging the held-out landmark error; resumable (``loop.run`` on
    :class:`RegressorStage`).

    out_dir receives ``log.csv`` (train losses per step; held-out :class:`RegressorMetrics` every
    ``eval_every``), ``checkpoints/face_3drecon_<step>-model.pth`` (the official ``epoch_20.pth`` layout +
    optimizer and RNG state) and at the end the ``face_3drecon`` section of ``SadTalker_V0.0.2_{size}.safetensors``
    with ``sadtalker_lab.json`` (:func:`save_regressor`). init: a starting regressor or checkpoint (its
    backbone must match the config; default: fresh weights seeded with ``config.seed``, heads per
    :func:`init_heads`). stop_after: stop after that many steps without the final save (an interrupted run).
    morphable: the face model the coefficients belong to (default: the offline stand-in).
    Each batch also gets a random brightness gain in [0.9, 1.1] per crop (drawn from the step's generator, so a
    resumed run sees the same batches). ``RegressorRun.before`` is None for a resumed run.
    """
    stage = RegressorStage(train, heldout, config, init=init, morphable=morphable, size=size)
    threads = torch.get_num_threads()
    try:
        res = run(stage, out_dir, resume=resume, stop_after=stop_after)
        model, held = stage.model.eval(), stage.heldout
        after = evaluate_regressor(model, held, stage.morphable) if held is not None else None
        baseline = evaluate_coefficients(np.repeat(train.coeffs.mean(0, keepdims=True), len(held), 0), held,
                                         stage.morphable) if held is not None else None
    finally:
        torch.set_num_threads(threads)
    return RegressorRun(model=model, history=res.history, out_dir=Path(out_dir), config=stage.config, step=res.step,
                        checkpoint=res.final, before=stage.before, after=after, mean_baseline=baseline)


def cli_stage(corpus: Path, preset: str, heldout: float = 0.25, every: int = 5, max_frames: int = 40,
              **overrides) -> RegressorStage:
    """``sadtalker-lab train regressor``: frames of a corpus folder (``regressor_data_from_corpus``), with whole
    identities held out (``corpus.splits.identity_split``; one identity only: its last clips, and the split says
    so). The run writes ``heldout.json`` (:meth:`RegressorStage.heldout_report`)."""
    from ..data.corpus.splits import identity_split
    from ..data.portraits import regressor_data_from_corpus

    config = getattr(RegressorTrainConfig, preset)(**overrides)
    split = identity_split(corpus, heldout_fraction=heldout, seed=config.seed)
    train = regressor_data_from_corpus(corpus, every=every, max_frames=max_frames, clips=split.train)
    held = regressor_data_from_corpus(corpus, every=every, max_frames=max_frames, clips=split.heldout)
    return RegressorStage(train, held, config, split=split.to_json())


# ---------------------------------------------------------------------------------------------
# Saving in the official layout
# ---------------------------------------------------------------------------------------------
def save_regressor(folder: str | os.PathLike, model: CoefficientRegressor, size: int = 256,
                   morphable_name: str | None = None, **info) -> Path:
    """Write ``model`` as the ``face_3drecon`` section of ``<folder>/SadTalker_V0.0.2_{size}.safetensors`` and its
    config to ``sadtalker_lab.json`` (``registry.save_networks``, which keeps the other networks already in that
    file, e.g. trained by the other stages into the same folder). Returns the safetensors path."""
    from ..official import SAFETENSORS_FILE
    from ..official.registry import save_networks

    extra = {"face_3drecon_coefficients": morphable_name} if morphable_name else {}
    save_networks(folder, {NETWORK: model}, {NETWORK: model.config}, size=size, **extra, **info)
    return Path(folder) / SAFETENSORS_FILE.format(size=size)


def load_regressor(folder: str | os.PathLike, size: int = 256) -> CoefficientRegressor:
    """The regressor stored in a checkpoint folder (its ``sadtalker_lab.json`` config, else the official one), eval."""
    from ..official.io import load_official
    from ..official.registry import build_network, read_configs

    model = build_network(NETWORK, read_configs(folder).get(NETWORK))
    return load_official(model, NETWORK, folder, size=size).eval()
