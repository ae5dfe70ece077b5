"""The paper's ablation studies re-run at a small preset: Table 3 (ExpNet) and Table 4 (PoseVAE).

Each row trains one variant with the trainers' switches (``EXPNET_ABLATIONS`` / ``POSEVAE_ABLATIONS``) on the
same windows, with the same seed and step budget, and scores it on the same held-out data. The tables hold
what a CPU can measure in minutes, in the paper's row layout:

* Table 3 (paper: LSE-C / LSE-D of rendered videos): the held-out ExpNet numbers of
  :class:`~sadtalker_lib.train.expnet.ExpNetMetrics`: lip-sync stand-ins (mouth opening vs audio energy
  correlation, the trained-here lip reader's accuracy on the generated mouths) and the errors against the
  lip-only teacher (coefficients, mouth landmarks in px). They are *not* LSE numbers; the paper's are given
  beside them by :data:`PAPER_TABLE3` for the ordering of rows.
* Table 4 (paper: Diversity / Beat Align from Hopenet): the same two metrics on the generated head angles of
  held-out clips (``metrics.diversity`` on the 3 angles in radians, ``metrics.beat_align``), plus the held-out
  reconstruction MSE; "Single Fixed Style" and "Mixed Style" are two ways of sampling the full model.

A variant whose run folder already holds a finished run is loaded, not retrained (the trainers resume), so a
widget can redraw and a larger run can be continued: :class:`AblationExplorer` is that widget (notebook 08).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from ..models.posevae import PoseVAE, PoseVAEConfig
from ..data.windows import ExpWindows, PoseWindows
from .expnet import EXPNET_ABLATIONS, ExpNetTrainConfig, train_expnet, train_expnet_lipreader
from .posevae import POSEVAE_ABLATIONS, PoseVAETrainConfig, train_posevae
from .posevae_eval import evaluate_posevae_clips

__all__ = [
    "BA_ABOVE_CHANCE", "BEATS_PER_S", "BA_OTHER_AUDIO", "HELDOUT_MSE", "POSE_MSE_VS_STILL", "STILL_HEAD_ROW",
    "RANDOM_SEQUENCE_ROW", "LINEAR_REF_POSE_ROW",
    "EXPNET_ROWS", "POSEVAE_ROWS", "PAPER_TABLE3", "PAPER_TABLE4", "AblationResult",
    "run_expnet_ablations", "run_posevae_ablations", "PAPER_COLUMN", "draw_ablation", "AblationExplorer",
]

#: Table 3 row labels of the paper for the ExpNet switches ("no_ref" is an extra row: beta_0 alone).
EXPNET_ROWS: dict[str, str] = {
    "full": "OursFull (lip coeffs. + β0 + L_read)",
    "no_ref_no_read": "w/o β0 & L_read",
    "no_read": "w/o L_read",
    "real_coeffs": "w/ real coeffs.",
    "no_ref": "w/o β0 (extra row)",
}

#: Table 4 rows: (PoseVAE switch, style sampling) -> the paper's label.
POSEVAE_ROWS: dict[tuple[str, str], str] = {
    ("full", "fixed"): "OursFull (Single Fixed Style)",
    ("no_gan", "fixed"): "w/o L_gan",
    ("no_ref_pose", "fixed"): "w/o initial pose",
    ("no_audio", "fixed"): "w/o audio",
    ("no_conditions", "fixed"): "w/o all conditions",
    ("full", "mixed"): "OursFull (Mixed Style)",
}

#: The paper's Table 3 (HDTF; LSE-C higher is better, LSE-D lower is better). Speech2Gesture is a baseline.
PAPER_TABLE3 = pd.DataFrame(
    {"LSE-C ↑": [0.878, 7.290, 5.241, 6.993, 6.567], "LSE-D ↓": [13.889, 7.772, 9.532, 7.841, 8.061]},
    index=pd.Index(["Speech2Gesture", EXPNET_ROWS["full"], EXPNET_ROWS["no_ref_no_read"], EXPNET_ROWS["no_read"],
                    EXPNET_ROWS["real_coeffs"]], name="method"))

#: The paper's Table 4 (Diversity and Beat Align, both higher is better).
PAPER_TABLE4 = pd.DataFrame(
    {"Diversity ↑": [0.1574, 0.2735, 0.2500, 0.2725, 0.2566, 0.2631, 0.2778],
     "Beat Align ↑": [0.274, 0.287, 0.271, 0.278, 0.274, 0.279, 0.293]},
    index=pd.Index(["Speech2Gesture"] + list(POSEVAE_ROWS.values()), name="method"))


@dataclass
class AblationResult:
    """table: one row per variant (paper labels as the index, ``variant`` column = the switch name);
    runs: switch name -> the trainer's run (model, history, checkpoint); before: the untrained model's row."""

    table: pd.DataFrame
    runs: dict = field(default_factory=dict)
    before: pd.Series | None = None


# (the held-out L_exp itself is not a column: its terms differ between variants, e.g. no L_read)
_EXP_COLUMNS = {
    "exp_error": "exp. error vs teacher ↓",
    "mouth_error": "mouth landmark error (px) ↓",
    "mouth_energy_corr": "mouth~energy r ↑",
    "lipreader_acc": "lip-reader acc. ↑",
}


def _exp_row(row: Mapping) -> dict:
    return {label: float(row[key]) for key, label in _EXP_COLUMNS.items()}


def _checked(names: Sequence[str] | None, known: Mapping, default: Sequence[str], what: str) -> list[str]:
    names = list(names) if names is not None else list(default)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown {what} ablation(s) {unknown}; known: {sorted(known)}")
    return names


def run_expnet_ablations(train: ExpWindows, heldout: ExpWindows, names: Sequence[str] | None = None,
                         config: ExpNetTrainConfig | None = None, out_dir: str | os.PathLike = "runs/ablations/expnet",
                         *, progress: bool = True) -> AblationResult:
    """Train and score each ExpNet variant of ``names`` (default: the four Table 3 rows).

    All variants share the config (``ExpNetTrainConfig.cpu()`` by default), the seed, and one trained-here lip
    reader (trained once on the training windows; the "w/o L_read" rows do not use it in training, every row is
    scored by it). Returns the table (index: paper labels) and the runs; ``before`` is the untrained full model.
    """
    names = _checked(names, EXPNET_ABLATIONS, ["full", "no_ref_no_read", "no_read", "real_coeffs"], "ExpNet")
    config = config or ExpNetTrainConfig.cpu()
    config = config.replace(progress=progress)
    out_dir = Path(out_dir)
    reader = train_expnet_lipreader(train, steps=config.lipreader_steps, seed=config.seed)
    rows, runs, before = [], {}, None
    for name in names:
        cfg = config.ablation(name)
        run = train_expnet(train, heldout, cfg, out_dir / name, lipreader=reader)
        runs[name] = run
        held = [r for r in run.history.rows if r["split"] == "heldout"]  # the last: the final model's scores
        if before is None and name == "full" and held[0]["step"] == 0:
            before = pd.Series(_exp_row(held[0]), name="untrained")
        rows.append({"method": EXPNET_ROWS[name], "variant": name, **_exp_row(held[-1])})
    table = pd.DataFrame(rows).set_index("method")
    table.attrs["caption"] = (f"Table 3 at the CPU preset: {config.steps} steps x {config.batch_size} windows, "
                              f"held-out windows {len(heldout)}; lip-sync stand-ins, not LSE.")
    return AblationResult(table=table, runs=runs, before=before)


def run_posevae_ablations(train: PoseWindows, heldout: PoseWindows, heldout_clips: Sequence[Mapping],
                          names: Sequence[str] | None = None, config: PoseVAETrainConfig | None = None,
                          out_dir: str | os.PathLike = "runs/ablations/posevae", *, num_styles: int | None = None,
                          progress: bool = True) -> AblationResult:
    """Train and score each PoseVAE variant of ``names`` (default: all of Table 4).

    heldout_clips: whole clips (``mel``, ``coeffs``, ``audio``, ``style_id``; see ``evaluate_posevae_clips``) whose
    head motion is generated with the inference path and scored (Diversity, Beat Align); the full model is
    sampled twice, with one fixed style and with mixed styles (its two Table 4 rows). The corpus's own motion of
    the same clips is the "Real" row. ``before`` is the untrained full model (fixed style).
    """
    names = _checked(names, POSEVAE_ABLATIONS, list(POSEVAE_ABLATIONS), "PoseVAE")
    config = config or PoseVAETrainConfig.cpu()
    config = config.replace(progress=progress)
    out_dir = Path(out_dir)
    rows, runs = [], {}
    real = baseline = None

    def score(model, style, audio="own"):
        return evaluate_posevae_clips(model, heldout_clips, style=style, seed=config.seed, num_styles=num_styles,
                                      audio=audio)

    for name in names:
        run = train_posevae(train, heldout, config.ablation(name), out_dir / name)
        runs[name] = run
        last = [r for r in run.history.rows if r["split"] == "heldout"][-1]
        for (variant, style), label in POSEVAE_ROWS.items():
            if variant != name:
                continue
            m = score(run.model, style)
            real = real or m
            h = run.heldout
            rows.append({"method": label, "variant": name, "style": style, "Diversity ↑": m.diversity,
                         "Beat Align ↑": m.beat_align, HELDOUT_MSE: float(last["mse"]),
                         POSE_MSE_VS_STILL: h.pose_mse / h.still_head if h else float("nan"),
                         **_beat_columns(m), BA_OTHER_AUDIO: score(run.model, style, "shuffled").beat_align})
            baseline = baseline or h
    torch.manual_seed(config.seed)
    m0 = score(PoseVAE(PoseVAEConfig(logvar_from_means_layer=False)), "fixed")
    before = pd.Series({"Diversity ↑": m0.diversity, "Beat Align ↑": m0.beat_align}, name="untrained")
    if real is not None:
        rows.append({"method": "Real (corpus motion)", "variant": "real", "style": "-",
                     "Diversity ↑": real.real_diversity, "Beat Align ↑": real.real_beat_align,
                     HELDOUT_MSE: float("nan"), **_beat_columns(real, "real_")})
    if baseline is not None:  # the trivial baselines of the held-out windows (the same for every variant)
        rows.append({"method": STILL_HEAD_ROW, "variant": "still_head", "style": "-", "Diversity ↑": 0.0,
                     "Beat Align ↑": 0.0, POSE_MSE_VS_STILL: 1.0})
        rows.append({"method": RANDOM_SEQUENCE_ROW, "variant": "random_sequence", "style": "-",
                     POSE_MSE_VS_STILL: baseline.random_training_sequence / baseline.still_head})
        rows.append({"method": LINEAR_REF_POSE_ROW, "variant": "linear_in_rho0", "style": "-",
                     POSE_MSE_VS_STILL: baseline.linear_in_rho0 / baseline.still_head})
    order = {label: i for i, label in enumerate(POSEVAE_ROWS.values())}
    table = pd.DataFrame(rows).set_index("method")
    table = table.iloc[sorted(range(len(table)), key=lambda i: order.get(table.index[i], len(order)))]
    table.attrs["caption"] = (f"Table 4 at the CPU preset: {config.steps} steps x {config.batch_size} windows; "
                              f"{len(heldout_clips)} held-out clips; Diversity in radians (3 angles), "
                              "Beat Align [pose angles]: Bailando's score on the generated pose angles, a "
                              "stand-in for the paper's on video-detected head poses; the chance level, beats per "
                              "second and another clip's audio are diagnostics, not in the paper.")
    return AblationResult(table=table, runs=runs, before=before)


#: Table 4's diagnostic columns (not in the paper). Beat Align is a recall over audio beats, so it rises with the
#: number of motion beats alone: "− chance" subtracts the score of the same motion beats at every offset against
#: the audio (``metrics.beat_align.chance_beat_align``); "another clip's audio" feeds the model the next held-out
#: clip's mel (scored against the clip's own audio): the same motion statistics with the timing broken.
BA_ABOVE_CHANCE = "Beat Align − chance (same beats, any offset) ↑"
BEATS_PER_S = "motion beats / s"
BA_OTHER_AUDIO = "Beat Align, another clip's audio (control)"
#: the CVAE's reconstruction of held-out windows through its encoder (the last held-out evaluation's "mse")
HELDOUT_MSE = "held-out MSE ↓"
#: the prediction error of held-out windows (decoder at z = 0, ``posevae_eval.evaluate_pose_heldout``) over a still
#: head's: below 1 the model predicts head motion better than no motion ("held-out MSE" is the CVAE's
#: reconstruction through its encoder, which sees the target: not a prediction)
POSE_MSE_VS_STILL = "pose MSE (z = 0) / still head's ↓"
STILL_HEAD_ROW = "Still head ρ_t = ρ_0 (baseline)"
RANDOM_SEQUENCE_ROW = "Random training sequence (baseline)"
#: not a trivial motion: Delta rho fitted by least squares as an affine function of rho_0 (posevae_eval)
LINEAR_REF_POSE_ROW = "Linear in ρ_0, least squares (baseline, not in the paper)"


def _beat_columns(m, prefix: str = "") -> dict[str, float]:
    """The Beat Align diagnostics of a ``PoseClipMetrics`` (``prefix`` "real_": of the corpus motion)."""
    ba, chance = getattr(m, f"{prefix}beat_align"), getattr(m, f"{prefix}beat_align_chance")
    return {BA_ABOVE_CHANCE: ba - chance, BEATS_PER_S: getattr(m, f"{prefix}beats_per_s")}


# --- the notebook's explorer (notebook 08) -------------------------------------------------------------------------
#: our column -> the paper's column it stands in for (ordering only: the numbers are not comparable)
PAPER_COLUMN = {"Diversity ↑": "Diversity ↑", "Beat Align ↑": "Beat Align ↑", "mouth~energy r ↑": "LSE-C ↑",
                "lip-reader acc. ↑": "LSE-C ↑", "exp. error vs teacher ↓": "LSE-D ↓",
                "mouth landmark error (px) ↓": "LSE-D ↓"}


def draw_ablation(ours: pd.DataFrame, paper: pd.DataFrame, rows: Sequence[str], metric: str):
    """Bar charts of one metric for ``rows`` of our table (left) and the paper's stand-in column (right)."""
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r in ours.index] or list(ours.index)
    if metric not in ours.columns:
        metric = next(c for c in ours.columns if c not in ("variant", "style"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.2))
    axes[0].barh(rows, ours.loc[rows, metric].astype(float), color="C0")
    axes[0].set_title(f"this run: {metric}")
    axes[0].invert_yaxis()
    col = PAPER_COLUMN.get(metric)
    shared = [r for r in rows if r in paper.index]
    if col in paper.columns and shared:
        axes[1].barh(shared, paper.loc[shared, col], color="C1")
        axes[1].invert_yaxis()
        axes[1].set_title(f"paper: {col}")
    else:
        axes[1].axis("off")
        axes[1].text(0, 0.5, "no paper value for these rows", fontsize=9)
    plt.tight_layout()
    plt.show()
    return fig


class AblationExplorer:
    """ipywidgets controller over the Table 3 / Table 4 results: pick a table, rows and a metric to plot, or
    continue training the selected variants for more steps (their run folders resume).

    ``exp`` / ``pose``: the :class:`AblationResult` of :func:`run_expnet_ablations` / :func:`run_posevae_ablations`;
    ``exp_args`` / ``pose_args``: the positional data those were called with ((train, heldout) and (train, heldout,
    heldout_clips)); ``exp_config`` / ``pose_config`` and ``out_dir`` (with ``expnet`` / ``posevae`` inside) as used.
    ``tables`` holds the current tables (with the untrained row); :meth:`widget` builds the controls.
    """

    def __init__(self, exp: AblationResult, pose: AblationResult, *, exp_args: tuple, pose_args: tuple,
                 exp_config: ExpNetTrainConfig, pose_config: PoseVAETrainConfig, out_dir: str | os.PathLike,
                 num_styles: int | None = None):
        self.exp, self.pose, self.exp_args, self.pose_args = exp, pose, exp_args, pose_args
        self.exp_config, self.pose_config = exp_config, pose_config
        self.out_dir, self.num_styles = Path(out_dir), num_styles
        self.tables = {"Table 3 (ExpNet)": _with_before(exp), "Table 4 (PoseVAE)": _with_before(pose)}
        self.papers = {"Table 3 (ExpNet)": PAPER_TABLE3, "Table 4 (PoseVAE)": PAPER_TABLE4}

    def draw(self, table: str, rows: Sequence[str], metric: str):
        return draw_ablation(self.tables[table], self.papers[table], rows, metric)

    def continue_training(self, table: str, variants: Sequence[str], more_steps: int) -> pd.DataFrame:
        """Train ``variants`` of ``table`` for ``more_steps`` more steps (resuming) and update the table."""
        variants = sorted(set(variants) - {"untrained", "real"})
        if table.startswith("Table 3"):
            self.exp_config = self.exp_config.replace(steps=self.exp_config.steps + more_steps)
            more = run_expnet_ablations(*self.exp_args, variants, self.exp_config, self.out_dir / "expnet",
                                        progress=False)
            self.exp.runs.update(more.runs)
        else:
            self.pose_config = self.pose_config.replace(steps=self.pose_config.steps + more_steps)
            more = run_posevae_ablations(*self.pose_args, variants, self.pose_config, self.out_dir / "posevae",
                                         num_styles=self.num_styles, progress=False)
            self.pose.runs.update(more.runs)
        ours = self.tables[table]
        merged = pd.concat([ours.drop(index=[i for i in more.table.index if i in ours.index]), more.table])
        # the retrained rows keep their places (the widget's row list and the plot keep the table's order)
        self.tables[table] = merged.loc[[i for i in ours.index if i in merged.index]
                                        + [i for i in merged.index if i not in ours.index]]
        return self.tables[table]

    def widget(self):
        """The controls: table, metric, rows, "more steps" and a "Continue training" button, above the plot."""
        import ipywidgets as widgets

        table_w = widgets.Dropdown(options=list(self.tables), description="table")
        rows_w = widgets.SelectMultiple(rows=7, description="rows")
        metric_w = widgets.Dropdown(description="metric")
        steps_w = widgets.IntSlider(value=40, min=10, max=400, step=10, description="more steps")
        train_w = widgets.Button(description="Continue training", icon="play", layout=widgets.Layout(width="auto"))
        plot_w = widgets.Output()

        updating = []  # non-empty while refresh() sets several controls: one redraw at its end, not one each

        def redraw(*_):
            if updating:
                return
            plot_w.clear_output(wait=True)
            with plot_w:
                self.draw(table_w.value, list(rows_w.value), metric_w.value)

        def refresh(*_):
            ours = self.tables[table_w.value]
            metrics = [c for c in ours.columns if c not in ("variant", "style")]
            keep = metric_w.value
            updating.append(True)
            try:
                rows_w.options = list(ours.index)
                rows_w.value = tuple(ours.index)
                metric_w.options = metrics
                # new options leave a Dropdown's value None (ipywidgets 8): the menu would show no metric
                metric_w.value = keep if keep in metrics else metrics[0]
            finally:
                updating.clear()
            redraw()

        def on_train(_):
            ours = self.tables[table_w.value]
            variants = {ours.loc[r, "variant"] for r in rows_w.value}
            train_w.disabled, done = True, False
            with plot_w:  # an error while training shows here (the Output prints the traceback)
                print("training", sorted(variants), "for", steps_w.value, "more steps ...")
                self.continue_training(table_w.value, variants, steps_w.value)
                done = True
            train_w.disabled = False
            if done:
                refresh()

        table_w.observe(refresh, "value")
        rows_w.observe(redraw, "value")
        metric_w.observe(redraw, "value")
        train_w.on_click(on_train)
        box = widgets.VBox([widgets.HBox([table_w, metric_w]),
                            widgets.HBox([rows_w, widgets.VBox([steps_w, train_w])]), plot_w])
        refresh()
        return box


def _with_before(res: AblationResult) -> pd.DataFrame:
    """The result table with the untrained model's row (variant "untrained")."""
    if res.before is None:
        return res.table
    return pd.concat([res.table, res.before.to_frame().T.assign(variant="untrained")])
