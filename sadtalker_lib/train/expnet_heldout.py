"""ExpNet on held-out clips beside its trivial baselines: what ``heldout.json`` and notebook 03 report.

Every number compares the mouth of a coefficient sequence with the lip-only teacher (beta^lip, the target of
Eq. 3) on the face it drives (the differentiable projection R_d of the ``DefaultMorphableModel`` stand-in, 224 px):

* ``mouth_landmark_error_px``: mean distance of the 20 mouth landmarks (48-67) to the teacher's;
* ``mouth_opening_corr``: per clip, the Pearson correlation over frames of the mouth opening (inner-lip gap over
  the eye-corner distance, ``morphable.render.mouth_opening``) with the teacher's, averaged over clips;
* ``mouth_energy_corr``: the same with the audio energy of each frame's mel window (a lip-sync stand-in that
  needs no trained network; the teacher itself scores what a perfect student would);
* ``expression_mse``: MSE of the 64 coefficients against the teacher.

Rows: ``trained`` (ExpNet with z_blink = 0, eval mode), ``beta0_only`` (beta_t = beta_0 for every frame: the
reference face, its mouth frozen as in the first frame: the "closed lips" of the issue), ``mean_mouth`` (beta_0
with its mouth replaced by the training targets' average mouth: the best audio-free answer of this kind, and
where ExpNet starts, ``expnet.warm_start_mapping``; given the training windows) and ``teacher_lip_only`` (the
target itself, for the measures where it is not trivially perfect). A constant mouth has no correlation with
anything: ``beta0_only`` and ``mean_mouth`` score 0 there.

The lip reader of L_read is NOT used here: it is trained on the same teacher and is a training loss, so its
accuracy on the generated mouths is not evidence of lip sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..landmarks import MOUTH_LANDMARKS
from ..data.windows import ExpWindows, frame_energy
from ..morphable.render import mouth_opening
from .heldout import HeldoutMetric, HeldoutReport
from .losses import distill_loss

__all__ = ["ExpNetMetrics", "evaluate_expnet", "MOUTH_POINTS", "MouthTracks", "ExpNetHeldout", "predict_windows",
           "mouth_tracks", "expnet_heldout", "heldout_report"]

MOUTH_POINTS = MOUTH_LANDMARKS  # (re-exported name)
ROWS = ("trained", "beta0_only", "mean_mouth", "teacher_lip_only")
LABEL = "DefaultMorphableModel stand-in face, vs the lip-only viseme teacher"


@dataclass
class MouthTracks:
    """Per held-out clip, the mouth opening over its frames [T_k] for each row, and the audio energy [T_k]."""

    clip: int
    opening: dict[str, np.ndarray]
    energy: np.ndarray


@dataclass
class ExpNetHeldout:
    """Held-out numbers of :data:`ROWS` (a dict per measure: row -> value) and the per-clip tracks."""

    mouth_landmark_error_px: dict[str, float]
    mouth_opening_corr: dict[str, float]
    mouth_energy_corr: dict[str, float]
    expression_mse: dict[str, float]
    tracks: list[MouthTracks] = field(default_factory=list)
    n_clips: int = 0
    n_frames: int = 0

    def per_clip_opening_corr(self, row: str = "trained") -> list[float]:
        """Per held-out clip, the correlation of ``row``'s mouth opening with the teacher's."""
        return [_corr(t.opening[row], t.opening["teacher_lip_only"]) for t in self.tracks]

    def table(self) -> list[dict]:
        """One dict per row (``row``, then each measure): what a notebook shows as a DataFrame."""
        out = []
        for row in ROWS:
            out.append({"row": row, **{m: getattr(self, m).get(row, float("nan")) for m in
                                       ("mouth_landmark_error_px", "mouth_opening_corr", "mouth_energy_corr",
                                        "expression_mse")}})
        return out


@dataclass
class ExpNetMetrics:
    """Held-out numbers for one ExpNet.

    loss / distill / lks / eye / read: the Eq. 3-10 terms with a fixed blink draw.
    exp_error: MSE of beta^g (z_blink = 0) against the lip-only teacher (expression error vs the teacher);
    mouth_error: the same comparison seen on the face: mean distance (px, 224 image) of the 20 mouth landmarks.
    mouth_energy_corr: correlation over frames between mouth opening (inner-lip gap 62-66 over the eye-corner
    distance) and audio energy (a lip-sync measure); teacher_mouth_energy_corr: the same for the teacher.
    opening_corr: per held-out clip, the correlation of the mouth opening with the teacher's, averaged.
    lipreader_acc: frame accuracy of the lip reader on the generated mouths (nan without labels / reader). NOT
    evidence of lip sync: the reader is trained on the same teacher and is the L_read training loss (circular);
    it is logged to follow that loss, never reported as a result.
    """

    loss: float
    distill: float
    lks: float
    eye: float
    read: float
    exp_error: float
    mouth_error: float
    mouth_energy_corr: float
    teacher_mouth_energy_corr: float
    lipreader_acc: float
    opening_corr: float = float("nan")


def _corr_t(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


@torch.no_grad()
def evaluate_expnet(model, windows: ExpWindows, config=None, morphable=None, lipreader=None, seed: int = 1234,
                    batch_size: int = 64, with_predictions: bool = False):
    """Held-out evaluation in eval mode (BatchNorm running statistics), deterministic for ``seed``.

    Returns the :class:`ExpNetMetrics`; with ``with_predictions``, ``(metrics, beta)``: beta [N, T, 64] the model's
    output with z_blink = 0 (what :func:`predict_windows` gives, from the same audio features)."""
    from .expnet import ExpNetTrainConfig, default_morphable_model, expnet_step_losses, project_expression
    from .lipreader import lipreader_accuracy, mouth_features

    config = config or ExpNetTrainConfig()
    morphable = morphable or default_morphable_model()
    dev = next(model.parameters()).device  # model, morphable model and lip reader on one device: the windows too
    windows = windows.to(dev)
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    n, t = len(windows), windows.window
    z_all = torch.rand(n, t, generator=g).to(dev)
    sums: dict[str, float] = {}
    preds = []
    for s in range(0, n, batch_size):
        part = windows[torch.arange(s, min(s + batch_size, n))]
        audio = model.encode_audio(part.mel)  # Phi_A once (eval mode: the same features for both passes)
        _, terms, _ = expnet_step_losses(model, part, z_all[s:s + batch_size], config, morphable, lipreader, audio)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v * len(part)
        ref = part.ref_exp if config.use_ref_exp else torch.zeros_like(part.ref_exp)
        preds.append(model.map_features(audio, ref[:, None].expand(-1, t, -1), torch.zeros(len(part), t, 1,
                                                                                          device=dev)))
    model.train(was_training)
    pred = torch.cat(preds)
    lm = project_expression(morphable, pred, windows.id_coeff)
    lm_teacher = project_expression(morphable, windows.exp_lip, windows.id_coeff)
    energy = frame_energy(windows.mel)
    acc = float("nan")
    if lipreader is not None and windows.viseme is not None:
        acc = lipreader_accuracy(lipreader, mouth_features(lm), windows.viseme)
    mean = {k: v / n for k, v in sums.items()}
    metrics = ExpNetMetrics(
        loss=mean["loss"], distill=mean["distill"], lks=mean.get("lks", float("nan")),
        eye=mean.get("eye", float("nan")), read=mean.get("read", float("nan")),
        exp_error=float(distill_loss(pred, windows.exp_lip)),
        mouth_error=float((lm - lm_teacher)[..., list(MOUTH_POINTS), :].norm(dim=-1).mean()),
        mouth_energy_corr=_corr_t(mouth_opening(lm), energy),
        teacher_mouth_energy_corr=_corr_t(mouth_opening(lm_teacher), energy),
        lipreader_acc=acc,
        opening_corr=float(np.mean([_corr(tr.opening["g"], tr.opening["t"]) for tr in
                                    mouth_tracks({"g": lm, "t": lm_teacher}, windows)])),
    )
    return (metrics, pred) if with_predictions else metrics



@torch.no_grad()
def predict_windows(model, windows: ExpWindows, use_ref_exp: bool = True, batch_size: int = 64) -> torch.Tensor:
    """ExpNet (eval mode, z_blink = 0) on every window -> beta [N, T, 64]; the model's mode is restored."""
    was = model.training
    model.eval()
    t = windows.window
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(windows), batch_size):
        part = windows[torch.arange(s, min(s + batch_size, len(windows)))].to(dev)
        ref = part.ref_exp if use_ref_exp else torch.zeros_like(part.ref_exp)
        out.append(model(part.mel, ref[:, None].expand(-1, t, -1), torch.zeros(len(part), t, 1, device=dev)))
    model.train(was)
    return torch.cat(out) if out else windows.exp_lip.new_zeros(0, t, windows.exp_lip.shape[-1])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0  # a constant series correlates with nothing


def mouth_tracks(landmarks: dict[str, torch.Tensor], windows: ExpWindows) -> list[MouthTracks]:
    """Group frames by clip (windows in corpus order: with stride == window they tile each clip) -> tracks."""
    opening = {k: mouth_opening(v).reshape(len(windows), -1) for k, v in landmarks.items()}  # [N, T]
    energy = frame_energy(windows.mel)  # [N, T]
    out = []
    for c in torch.unique(windows.clip, sorted=True).tolist():
        rows = torch.nonzero(windows.clip == c).flatten()
        out.append(MouthTracks(int(c), {k: v[rows].reshape(-1).double().cpu().numpy() for k, v in opening.items()},
                               energy[rows].reshape(-1).double().cpu().numpy()))
    return out


@torch.no_grad()
def expnet_heldout(model, windows: ExpWindows, morphable, use_ref_exp: bool = True,
                   train: ExpWindows | None = None, trained: torch.Tensor | None = None) -> ExpNetHeldout:
    """All held-out measures of ``model`` and the baselines on ``windows`` (see the module docstring); ``train``:
    the training windows (for the ``mean_mouth`` row); ``trained``: the model's predictions [N, T, 64] when the
    caller has them (``evaluate_expnet(..., with_predictions=True)`` on the same model), else computed here."""
    from .expnet import lip_subspace, project_expression

    windows = windows.to(next(model.parameters()).device)  # beside the model and the morphable model
    t = windows.window
    if trained is None:
        trained = predict_windows(model, windows, use_ref_exp)
    seqs = {"trained": trained.to(windows.exp_lip.device),
            "beta0_only": windows.ref_exp[:, None].expand(-1, t, -1),
            "teacher_lip_only": windows.exp_lip}
    if train is not None and len(train):
        u, mean = (x.to(windows.ref_exp.device) for x in lip_subspace(train))
        proj = u @ u.T
        seqs["mean_mouth"] = (windows.ref_exp - windows.ref_exp @ proj + proj @ mean)[:, None].expand(-1, t, -1)
    lms = {k: project_expression(morphable, v.contiguous(), windows.id_coeff) for k, v in seqs.items()}
    mouth = list(MOUTH_POINTS)
    err = {k: float((v - lms["teacher_lip_only"])[..., mouth, :].norm(dim=-1).mean()) for k, v in lms.items()
           if k != "teacher_lip_only"}
    mse = {k: float(((v - windows.exp_lip) ** 2).mean()) for k, v in seqs.items() if k != "teacher_lip_only"}
    tracks = mouth_tracks(lms, windows)
    corr = {k: float(np.mean([_corr(tr.opening[k], tr.opening["teacher_lip_only"]) for tr in tracks]))
            for k in lms if k != "teacher_lip_only"}
    energy = {k: float(np.mean([_corr(tr.opening[k], tr.energy) for tr in tracks])) for k in lms}
    return ExpNetHeldout(err, corr, energy, mse, tracks, n_clips=len(tracks), n_frames=len(windows) * t)


def heldout_report(result: ExpNetHeldout, split: dict | None = None) -> HeldoutReport:
    """``heldout.json`` of an ExpNet run: each measure, trained vs its baselines (``train.heldout``). split: what
    the numbers were measured on (``CorpusSplit.to_json()``: clip and identity ids; its list entries are kept)."""
    def metric(values: dict[str, float], lower: bool, label: str, rows=ROWS[1:]) -> HeldoutMetric:
        return HeldoutMetric(values["trained"], {r: values[r] for r in rows if r in values}, lower, label)

    return HeldoutReport("expnet", {
        "mouth_landmark_error_px": metric(result.mouth_landmark_error_px, True, f"px at 224; {LABEL}"),
        "mouth_opening_corr": metric(result.mouth_opening_corr, False,
                                     f"per-clip Pearson r with the teacher's mouth opening, mean; {LABEL}"),
        "mouth_energy_corr": metric(result.mouth_energy_corr, False,
                                    "per-clip r of mouth opening with audio energy (lip-sync stand-in), mean"),
        "expression_mse": metric(result.expression_mse, True, "64 coefficients vs the lip-only teacher"),
    }, split={k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (split or {}).items()})
