"""Tables 3 and 4 over several seeds (mean +- std) on held-out people, with the paper's orderings checked.

:mod:`.ablations` trains and scores the variants of one table once; this module repeats that for several training
seeds on one identity-disjoint split of a corpus (``data.corpus.splits.identity_split``), adds the lip-sync
columns to Table 3, summarises every column as mean and std over the seeds, and checks the orderings the paper
reports (:data:`ORDERINGS`), each with its paired gap and the number of seeds where it holds.

Table 3 lip sync: ``LSE-C / LSE-D [landmark stand-in]`` (``metrics.lipsync``, the offline stand-in that
``default_lip_sync_scorer`` returns when ``syncnet_v2.model`` is absent, validated on shifted copies in
``metrics.lipsync_validate``) on the mouth landmarks of the generated expression, projected through the
``DefaultMorphableModel`` stand-in face (R_d, frontal pose), for every held-out clip with its own audio; averaged
over clips. No video is rendered: the columns say "on 3DMM landmarks". ``LSE-C@0`` is the confidence of the
clip as played (offset 0; ``metrics.lipsync.confidence_at_zero``). Reference rows (seed-independent): the
lip-only teacher, the corpus's real coefficients and beta_0 alone (a still mouth). Two diagnostic columns say why
a lip-sync ordering may not show (:func:`expression_diagnostics`, ``TABLE3_LABELS``): the mouth error left when
each clip's resting shape is given (the stand-in standardises each mouth feature over the clip, so it hardly sees
a wrong resting shape, beta_0's part), and how much of the real coefficients' audio-irrelevant motion a row
reproduces.

Run the full tables from the command line (writes CSV and markdown; see :func:`main`)::

    python -m sadtalker_lib.train.ablation_tables --out runs/ablation-tables --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.corpus import Phenomena
from ..data.windows import ExpWindows, PoseWindows
from .ablations import (BA_ABOVE_CHANCE, BA_OTHER_AUDIO, BEATS_PER_S, EXPNET_ROWS, HELDOUT_MSE, POSE_MSE_VS_STILL,
                        POSEVAE_ROWS, run_expnet_ablations, run_posevae_ablations)
from .expnet import ExpNetTrainConfig
from .posevae import PoseVAETrainConfig

__all__ = ["LSE_C", "LSE_D", "LSE_C0", "AblationData", "ablation_data", "Ordering", "ORDERINGS", "lip_sync_scorer",
           "expression_lip_sync", "expression_diagnostics", "MOUTH_MOTION_PX", "IRRELEVANT_SHARE", "TABLE3_LABELS",
           "table3_over_seeds", "table4_over_seeds", "summarize", "summary_text",
           "check_orderings", "TableRun", "run_tables", "read_tables", "write_tables", "main"]

LSE_C = "LSE-C [landmark stand-in, 3DMM landmarks] ↑"
LSE_D = "LSE-D [landmark stand-in, 3DMM landmarks] ↓"
LSE_C0 = "LSE-C@0 [landmark stand-in, 3DMM landmarks] ↑"
MOUTH_PX = "mouth landmark error (px) ↓"  # the ablations table's column (vs the lip-only teacher)
DIVERSITY = "Diversity ↑"
BEAT_ALIGN = "Beat Align ↑"
#: the stand-in labels of Table 4's columns (printed in captions and the markdown)
TABLE4_LABELS = {DIVERSITY: "Diversity [pose angles, rad]: mean over clips of the std over time of the 3 generated "
                            "head angles (a stand-in for Hopenet embeddings of rendered video)",
                 BEAT_ALIGN: "Beat Align [pose angles]: Bailando's score of the generated head angles against the "
                             "speech onsets (a stand-in for Hopenet poses of rendered video)",
                 HELDOUT_MSE: "held-out MSE: the CVAE's reconstruction of held-out windows through its encoder "
                                   "(which sees the target), training units; not a prediction",
                 POSE_MSE_VS_STILL: "pose MSE (z = 0) / still head's: held-out windows predicted by the decoder at "
                                    "z = 0 from rho_0, audio and style, over the error of predicting no motion (below "
                                    "1: better than a still head; the baseline rows give 1, a random training "
                                    "sequence's, and that of a least-squares affine map of rho_0 alone)",
                 BA_ABOVE_CHANCE: "Beat Align − chance (a diagnostic, not in the paper): the score minus that of the "
                                  "same motion beats at every offset against the audio (circular shifts). Beat Align "
                                  "is a recall over audio beats, so it rises with the number of motion beats alone; "
                                  "this compares rows of different beat density",
                 BEATS_PER_S: "motion beats / s (a diagnostic): local minima of the smoothed head speed per second",
                 BA_OTHER_AUDIO: "Beat Align, another clip's audio (a control): the same model fed the next held-out "
                                 "clip's audio, scored against the clip's own; equal to Beat Align when the motion "
                                 "does not follow the audio's timing"}
MOUTH_MOTION_PX = "mouth motion error, resting shape given (px) ↓"
IRRELEVANT_SHARE = "audio-irrelevant motion reproduced"
#: the diagnostic columns of Table 3 (printed under the table)
TABLE3_LABELS = {MOUTH_MOTION_PX: "mouth motion error, resting shape given (a diagnostic): the mouth landmark error "
                                  "(px at 224 vs the lip-only teacher) after each held-out clip's mean expression is "
                                  "replaced by the teacher's. The lip-sync stand-in standardises each mouth feature "
                                  "over the clip, so a moderately wrong resting shape (beta_0's part of the error) "
                                  "hardly reaches LSE; what this column keeps does",
                 IRRELEVANT_SHARE: "audio-irrelevant motion reproduced (a diagnostic): the share of the real "
                                   "coefficients' audio-irrelevant motion over time (exp_real - exp_lip: drifts, "
                                   "smiles, breaths) that the row's deviation from the teacher reproduces "
                                   "(regression coefficient, each window centred over its frames): 1 = all of it, "
                                   "0 = none; a regression on targets whose extra motion is independent of the "
                                   "audio learns only its mean, one whose extra motion the audio times (the "
                                   "breaths in the pauses) learns part of it"}
REFERENCE_ROWS = {"teacher": "lip-only teacher (target; reference)", "real": "real coeffs. of the corpus (reference)",
                  "beta0": "β0 only: still mouth (reference)"}


# --- data ------------------------------------------------------------------------------------------------------------
@dataclass
class AblationData:
    """Everything both tables train and score on: ExpNet windows (held-out ones tile each clip), PoseVAE windows,
    the held-out clips (dicts for ``evaluate_posevae_clips``; ``audio`` 16 kHz), the split and the corpus."""

    corpus: Path
    exp_train: ExpWindows
    exp_held: ExpWindows
    pose_train: PoseWindows
    pose_held: PoseWindows
    held_clips: list[dict]
    split: object
    num_styles: int

    def describe(self) -> str:
        return (f"{self.split.describe()}; ExpNet windows {len(self.exp_train)} / {len(self.exp_held)}, PoseVAE "
                f"windows {len(self.pose_train)} / {len(self.pose_held)}")


def ablation_data(corpus: str | os.PathLike, heldout_fraction: float = 0.25, max_pose_train_clips: int | None = None,
                  split_seed: int = 0) -> AblationData:
    """Windows of ``corpus`` split by person (whole identities held out; ``expnet.expnet_corpus_windows``): ExpNet
    windows of 5 frames (train stride 2, held-out stride 5), PoseVAE windows of 33 frames (train stride 4 on at most
    ``max_pose_train_clips`` training clips, held-out stride 16), and the whole held-out clips."""
    from ..data.corpus import CorpusDataset, load_index
    from ..data.windows import pose_windows_from_dataset
    from ..notebook import clip_dicts
    from .expnet import expnet_corpus_windows

    corpus = Path(corpus)
    exp_train, exp_held, split = expnet_corpus_windows(corpus, heldout_fraction=heldout_fraction, seed=split_seed)
    pose_ids = list(split.train)[:max_pose_train_clips] if max_pose_train_clips else list(split.train)
    pose_train = pose_windows_from_dataset(CorpusDataset(corpus, window=33, stride=4, clips=pose_ids))
    pose_held = pose_windows_from_dataset(CorpusDataset(corpus, window=33, stride=16, clips=split.heldout))
    held_clips = clip_dicts(corpus, split.heldout)
    num_styles = len({c["style_id"] for c in load_index(corpus)["clips"]})
    return AblationData(corpus, exp_train, exp_held, pose_train, pose_held, held_clips, split, num_styles)


# --- lip sync of generated expressions --------------------------------------------------------------------------------
def lip_sync_scorer(log=print, *, train_steps: int | None = None, corpus_dir=None, path=None):
    """The landmark stand-in (``metrics.lipsync``): the scorer of ``default_lip_sync_scorer`` when that is the
    stand-in; when the official ``syncnet_v2.model`` is present (it scores video, not landmarks) the cached
    stand-in, trained once if missing. ``train_steps``: instead, train a quick stand-in for that many steps on
    ``corpus_dir``'s training split only (no real videos) into ``path`` (CI-sized notebook runs)."""
    from ..metrics.lipsync import LandmarkSyncScorer, default_lip_sync_scorer, load_standin, standin_path

    if train_steps:
        from ..metrics.lipsync_train import LipSyncTrainConfig, train_standin

        if path is None:
            raise ValueError("train_steps needs a path for the quick stand-in (never the shared cache)")
        if not Path(path).is_file():
            train_standin(path, config=LipSyncTrainConfig.tiny(steps=train_steps), corpus_dir=corpus_dir,
                          video_dir=False, log=log)
        return load_standin(path)

    scorer = default_lip_sync_scorer(log=log)
    if isinstance(scorer, LandmarkSyncScorer):
        return scorer
    if not standin_path().is_file():
        from ..metrics.lipsync_train import train_standin

        train_standin(log=log)
    return load_standin()


def _per_clip(seq: torch.Tensor, windows: ExpWindows) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """[N, T, 64] of windows that tile their clips (corpus order) -> per clip (k, [T_k, 64], id_coeff [80])."""
    out = []
    for c in torch.unique(windows.clip, sorted=True).tolist():
        rows = torch.nonzero(windows.clip == c).flatten()
        out.append((int(c), seq[rows].reshape(-1, seq.shape[-1]), windows.id_coeff[rows[0]]))
    return out


@torch.no_grad()
def expression_lip_sync(seq: torch.Tensor, windows: ExpWindows, audios: Sequence[np.ndarray], scorer,
                        morphable=None) -> dict[str, float]:
    """LSE of expression sequences ``seq`` [N, T, 64] (one per held-out window; the windows tile their clips) with
    each clip's audio (``audios[k]`` for the k-th clip of ``windows``): mouth landmarks through R_d
    (``expnet.project_expression``, frontal pose), then the stand-in's LSE per clip; means over clips of
    LSE-C, LSE-D, LSE-C@0 and |offset| (frames)."""
    from ..metrics.lipsync import confidence_at_zero, lse_from_features, mouth_code
    from ..metrics.faces import NoFaceError
    from .expnet import default_morphable_model, project_expression

    morphable = morphable or default_morphable_model()
    rows = []
    for k, exp, ident in _per_clip(seq, windows):
        lm = project_expression(morphable, exp[None].float(), ident[None].float())[0].double().numpy()
        try:
            res = lse_from_features(mouth_code(lm), scorer.predict(np.asarray(audios[k], np.float32), len(lm)),
                                    label=scorer.label)
        except (ValueError, NoFaceError):  # too short a clip
            continue
        rows.append((res.confidence, res.distance, confidence_at_zero(res), abs(res.offset)))
    if not rows:
        raise ValueError("no held-out clip was long enough to score lip sync")
    m = np.mean(rows, 0)
    return {LSE_C: float(m[0]), LSE_D: float(m[1]), LSE_C0: float(m[2]), "|offset| (frames) ↓": float(m[3])}


@torch.no_grad()
def expression_diagnostics(seq: torch.Tensor, windows: ExpWindows, morphable=None) -> dict[str, float]:
    """The two diagnostic columns of Table 3 (``TABLE3_LABELS``) for expression sequences ``seq`` [N, T, 64] on
    held-out ``windows`` (tiling their clips): ``MOUTH_MOTION_PX`` and ``IRRELEVANT_SHARE`` (NaN when the windows
    carry no real coefficients)."""
    from ..landmarks import MOUTH_LANDMARKS
    from .expnet import default_morphable_model, project_expression

    morphable = morphable or default_morphable_model()
    teacher = windows.exp_lip
    given = seq.clone()
    for c in torch.unique(windows.clip).tolist():  # each clip's mean expression := the teacher's
        rows = windows.clip == c
        given[rows] += (teacher[rows].reshape(-1, teacher.shape[-1]).mean(0)
                        - seq[rows].reshape(-1, seq.shape[-1]).mean(0))
    lm = project_expression(morphable, given.float(), windows.id_coeff.float())
    lm_t = project_expression(morphable, teacher.float(), windows.id_coeff.float())
    out = {MOUTH_MOTION_PX: float((lm - lm_t)[..., list(MOUTH_LANDMARKS), :].norm(dim=-1).mean()),
           IRRELEVANT_SHARE: float("nan")}
    if windows.exp_real is not None:
        centred = lambda x: x - x.mean(1, keepdim=True)  # noqa: E731  (over each window's frames)
        dev, irr = centred(seq - teacher).double(), centred(windows.exp_real - teacher).double()
        den = float((irr * irr).sum())
        out[IRRELEVANT_SHARE] = float((dev * irr).sum()) / den if den > 0 else float("nan")
    return out


def _held_audios(data: AblationData) -> list[np.ndarray]:
    return [np.asarray(c["audio"], np.float32) for c in data.held_clips]


def reference_lip_sync(data: AblationData, scorer) -> pd.DataFrame:
    """Table 3's seed-independent reference rows: the lip-only teacher, the real coefficients, beta_0 alone."""
    w, t = data.exp_held, data.exp_held.window
    seqs = {"teacher": w.exp_lip, "real": w.exp_real, "beta0": w.ref_exp[:, None].expand(-1, t, -1)}
    rows = [{"method": REFERENCE_ROWS[k], "variant": f"reference:{k}",
             **expression_lip_sync(s, w, _held_audios(data), scorer), **expression_diagnostics(s, w)}
            for k, s in seqs.items() if s is not None]
    return pd.DataFrame(rows).set_index("method")


# --- the tables over seeds --------------------------------------------------------------------------------------------
def table3_over_seeds(data: AblationData, seeds: Sequence[int], config: ExpNetTrainConfig,
                      out_dir: str | os.PathLike, variants: Sequence[str] | None = None, scorer=None,
                      log=print, results: dict | None = None) -> pd.DataFrame:
    """Table 3 for every seed: one row per (seed, variant); columns ``seed``, ``variant``, the lip-sync columns and
    the ablations table's columns (errors vs the lip-only teacher). Run folders ``out_dir/seed<k>/expnet/<variant>``;
    ``results`` (a dict) receives seed -> the :class:`~.ablations.AblationResult` (runs, models)."""
    from .expnet_heldout import predict_windows

    scorer = scorer or lip_sync_scorer(log)
    frames = []
    for seed in seeds:
        t0 = time.time()
        res = run_expnet_ablations(data.exp_train, data.exp_held, variants, config.replace(seed=int(seed)),
                                   Path(out_dir) / f"seed{seed}" / "expnet", progress=False)
        if results is not None:
            results[int(seed)] = res
        lse = []
        for v in res.table["variant"]:
            seq = predict_windows(res.runs[v].model, data.exp_held, res.runs[v].config.use_ref_exp)
            lse.append({**expression_lip_sync(seq, data.exp_held, _held_audios(data), scorer),
                        **expression_diagnostics(seq, data.exp_held)})
        table = pd.concat([res.table[["variant"]], pd.DataFrame(lse, index=res.table.index),
                           res.table.drop(columns="variant")], axis=1)
        frames.append(table.assign(seed=int(seed)))
        pd.concat(frames).to_csv(Path(out_dir) / "table3_per_seed.csv")  # what is done so far
        log(f"Table 3, seed {seed}: {len(table)} variants in {time.time() - t0:.0f} s")
    return pd.concat(frames)


def table4_over_seeds(data: AblationData, seeds: Sequence[int], config: PoseVAETrainConfig,
                      out_dir: str | os.PathLike, variants: Sequence[str] | None = None, log=print,
                      results: dict | None = None) -> pd.DataFrame:
    """Table 4 for every seed (``ablations.run_posevae_ablations``: both samplings of the full model and the
    corpus's own motion, "Real"); one row per (seed, row); run folders ``out_dir/seed<k>/posevae/<variant>``;
    ``results``: as in :func:`table3_over_seeds`."""
    frames = []
    for seed in seeds:
        t0 = time.time()
        res = run_posevae_ablations(data.pose_train, data.pose_held, data.held_clips, variants,
                                    config.replace(seed=int(seed)), Path(out_dir) / f"seed{seed}" / "posevae",
                                    num_styles=data.num_styles, progress=False)
        if results is not None:
            results[int(seed)] = res
        frames.append(res.table.assign(seed=int(seed)))
        pd.concat(frames).to_csv(Path(out_dir) / "table4_per_seed.csv")  # what is done so far
        log(f"Table 4, seed {seed}: {len(res.table)} rows in {time.time() - t0:.0f} s")
    return pd.concat(frames)


def summarize(per_seed: pd.DataFrame, references: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and std (ddof 1; 0 for one seed) over seeds of every numeric column, per row (first-seen order):
    columns ``<metric> mean`` / ``<metric> std`` and ``seeds``; ``references`` rows (one value) are appended with
    std NaN."""
    metrics = [c for c in per_seed.columns if c not in ("seed", "variant", "style")
               and pd.api.types.is_numeric_dtype(per_seed[c])]
    order = list(dict.fromkeys(per_seed.index))
    g = per_seed.groupby(level=0, sort=False)
    mean, std = g[metrics].mean(), g[metrics].std(ddof=1).fillna(0.0)
    out = pd.concat({"mean": mean, "std": std}, axis=1).swaplevel(axis=1)
    out.columns = [f"{m} {s}" for m, s in out.columns]
    out = out[[f"{m} {s}" for m in metrics for s in ("mean", "std")]].loc[order]
    out.insert(0, "variant", g["variant"].first().loc[order])
    out["seeds"] = g["seed"].nunique().loc[order]
    if references is not None and len(references):
        ref = pd.DataFrame(index=references.index)
        ref["variant"] = references["variant"]
        for m in metrics:
            ref[f"{m} mean"] = references[m] if m in references else np.nan
            ref[f"{m} std"] = np.nan
        ref["seeds"] = 0
        out = pd.concat([out, ref])
    out.index.name = "method"
    return out


def summary_text(summary: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The summary as "mean ± std" strings per metric (what the markdown and the notebook show)."""
    metrics = [c[:-5] for c in summary.columns if c.endswith(" mean")]
    out = pd.DataFrame(index=summary.index)
    for m in metrics:
        mu, sd = summary[f"{m} mean"], summary[f"{m} std"]
        out[m] = [("n/a" if not np.isfinite(a) else f"{a:.{digits}f}" if not np.isfinite(b)
                   else f"{a:.{digits}f} ± {b:.{digits}f}") for a, b in zip(mu, sd)]
    out["seeds"] = summary["seeds"]
    return out


# --- the paper's orderings --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ordering:
    """``better`` should beat ``worse`` on ``metric`` (rows by paper label); ``claim``: what the paper says."""

    table: str
    claim: str
    better: str
    worse: str
    metric: str
    higher_is_better: bool
    phenomenon: str = ""


IRRELEVANT_EXPRESSION = "audio-irrelevant expression (expression_drift, smiles, pause_breaths)"
ORDERINGS: tuple[Ordering, ...] = (
    Ordering("3", "full ExpNet beats w/o β0 & L_read on lip sync", EXPNET_ROWS["full"], EXPNET_ROWS["no_ref_no_read"],
             LSE_D, False, "resting expressions (rest_spread, identity_spread)"),
    Ordering("3", "full ExpNet beats w/o β0 & L_read on lip sync", EXPNET_ROWS["full"], EXPNET_ROWS["no_ref_no_read"],
             LSE_C, True, "resting expressions (rest_spread, identity_spread)"),
    Ordering("3", "lip-only targets beat real coefficients on lip sync", EXPNET_ROWS["full"],
             EXPNET_ROWS["real_coeffs"], LSE_D, False, IRRELEVANT_EXPRESSION),
    Ordering("3", "lip-only targets beat real coefficients on lip sync", EXPNET_ROWS["full"],
             EXPNET_ROWS["real_coeffs"], LSE_C, True, IRRELEVANT_EXPRESSION),
    Ordering("4", "PoseVAE full beats w/o audio on Beat Align", POSEVAE_ROWS[("full", "fixed")],
             POSEVAE_ROWS[("no_audio", "fixed")], BEAT_ALIGN, True,
             "speech-locked nods (speech_nods, energy_coupling)"),
    Ordering("4", "mixed style >= single fixed style on Diversity", POSEVAE_ROWS[("full", "mixed")],
             POSEVAE_ROWS[("full", "fixed")], DIVERSITY, True, "per-style motion (free_motion, styles)"),
    Ordering("4", "diagnostic, not in the paper: PoseVAE full beats w/o audio on Beat Align − chance",
             POSEVAE_ROWS[("full", "fixed")], POSEVAE_ROWS[("no_audio", "fixed")], BA_ABOVE_CHANCE, True,
             "speech-locked nods (speech_nods, energy_coupling)"),
)


def check_orderings(per_seed: dict[str, pd.DataFrame], orderings: Sequence[Ordering] = ORDERINGS) -> pd.DataFrame:
    """Each ordering whose rows and metric are in ``per_seed[table]`` (tables by "3" / "4"): both means, the paired
    gap (better minus worse, sign so that > 0 = as the paper) mean and std over seeds, the seeds where it holds,
    and ``ordering holds`` (mean gap > 0; a tie counts for ">=" orderings)."""
    rows = []
    for o in orderings:
        t = per_seed.get(o.table)
        if t is None or o.metric not in t or o.better not in t.index or o.worse not in t.index:
            continue
        a = t.loc[[o.better]].set_index("seed")[o.metric].astype(float)
        b = t.loc[[o.worse]].set_index("seed")[o.metric].astype(float)
        gap = ((a - b) if o.higher_is_better else (b - a)).dropna()
        tie_ok = ">=" in o.claim
        holds = (gap >= 0) if tie_ok else (gap > 0)
        rows.append({"table": o.table, "ordering (paper)": o.claim, "metric": o.metric, "better (paper)": o.better,
                     "worse (paper)": o.worse, "better mean": float(a.mean()), "worse mean": float(b.mean()),
                     "gap mean": float(gap.mean()), "gap std": float(gap.std(ddof=1)) if len(gap) > 1 else 0.0,
                     "seeds holding": f"{int(holds.sum())}/{len(gap)}",
                     "ordering holds": bool(gap.mean() >= 0 if tie_ok else gap.mean() > 0),
                     "phenomenon (knob)": o.phenomenon})
    return pd.DataFrame(rows)


# --- one call for both tables, and the files -------------------------------------------------------------------------
@dataclass
class TableRun:
    """Per-seed tables, their summaries, the orderings and the settings / timings of one run."""

    table3: pd.DataFrame
    table4: pd.DataFrame
    references3: pd.DataFrame
    summary3: pd.DataFrame
    summary4: pd.DataFrame
    orderings: pd.DataFrame
    settings: dict = field(default_factory=dict)


def run_tables(data: AblationData, seeds: Sequence[int], exp_config: ExpNetTrainConfig,
               pose_config: PoseVAETrainConfig, out_dir: str | os.PathLike, exp_variants: Sequence[str] | None = None,
               pose_variants: Sequence[str] | None = None, tables: Sequence[str] = ("3", "4"), log=print) -> TableRun:
    """Both tables (or those of ``tables``) over ``seeds`` (see the module docstring); run folders under
    ``out_dir``; a table not run is empty."""
    t0 = time.time()
    out_dir = Path(out_dir)
    settings = dict(corpus=str(data.corpus), data=data.describe(), seeds=[int(s) for s in seeds],
                    torch_threads=torch.get_num_threads())
    t3 = t4 = refs = pd.DataFrame()
    if "3" in tables:
        scorer = lip_sync_scorer(log)
        refs = reference_lip_sync(data, scorer)
        t3 = table3_over_seeds(data, seeds, exp_config, out_dir, exp_variants, scorer, log)
        settings.update(exp_steps=exp_config.steps, exp_batch=exp_config.batch_size,
                        lip_sync=f"{scorer.label} ({type(scorer).__name__})", table3_seconds=round(time.time() - t0))
    if "4" in tables:
        t1 = time.time()
        t4 = table4_over_seeds(data, seeds, pose_config, out_dir, pose_variants, log)
        settings.update(pose_steps=pose_config.steps, pose_batch=pose_config.batch_size,
                        table4_seconds=round(time.time() - t1))
    return _table_run(t3, t4, refs, settings)


def _table_run(t3: pd.DataFrame, t4: pd.DataFrame, refs: pd.DataFrame, settings: dict) -> TableRun:
    per_seed = {k: t for k, t in (("3", t3), ("4", t4)) if len(t)}
    return TableRun(t3, t4, refs, summarize(t3, refs) if len(t3) else pd.DataFrame(),
                    summarize(t4) if len(t4) else pd.DataFrame(), check_orderings(per_seed), settings)


def read_tables(*folders: str | os.PathLike) -> TableRun:
    """A :class:`TableRun` from folders written by :func:`write_tables` (e.g. Table 3 and Table 4 run
    separately with ``--only``, or one seed's variants over processes): the per-seed tables, references and
    settings of all folders together; a (row, seed) that several folders hold counts once."""
    t3, t4, refs, settings = [], [], [], {}
    for f in map(Path, folders):
        for name, acc in (("table3_per_seed.csv", t3), ("table4_per_seed.csv", t4), ("table3_references.csv", refs)):
            if (f / name).is_file() and (f / name).read_text().startswith("method"):  # not an empty table
                acc.append(pd.read_csv(f / name, index_col="method"))
        if (f / "settings.json").is_file():
            settings.update(json.loads((f / "settings.json").read_text()))
    t3, t4, refs = [pd.concat(x) if x else pd.DataFrame() for x in (t3, t4, refs)]
    # folders that split one seed's variants (``--pose-variants``) each hold that seed's baseline rows (still head,
    # corpus motion, ...): keep one (row, seed) each, so the std and the seed counts are over seeds, not folders
    t3, t4 = [t[~t.set_index("seed", append=True).index.duplicated()] if len(t) else t for t in (t3, t4)]
    if len(refs):
        refs = refs[~refs.index.duplicated()]  # every Table 3 folder holds the same reference rows
    settings["seeds"] = sorted({int(v) for t in (t3, t4) if len(t) for v in t["seed"]})
    return _table_run(t3, t4, refs, settings)


def _markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table without the optional ``tabulate`` package."""
    def cell(v) -> str:  # a "|" inside a cell (e.g. "|offset|") would split it: escape it
        return (f"{v:.4f}" if isinstance(v, float) else str(v)).replace("|", "\\|")

    cols = [cell(df.index.name or "")] + [cell(str(c)) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([cell(str(idx))] + [cell(v) for v in row]) + " |")
    return "\n".join(lines)


def write_tables(run: TableRun, folder: str | os.PathLike) -> Path:
    """``table3_per_seed.csv``, ``table4_per_seed.csv``, ``table3_summary.csv``, ``table4_summary.csv``,
    ``orderings.csv``, ``settings.json`` and ``tables.md`` (both tables as mean ± std, the orderings) in
    ``folder``; returns the markdown's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run.table3.to_csv(folder / "table3_per_seed.csv")
    run.references3.to_csv(folder / "table3_references.csv")
    run.table4.to_csv(folder / "table4_per_seed.csv")
    run.summary3.to_csv(folder / "table3_summary.csv")
    run.summary4.to_csv(folder / "table4_summary.csv")
    run.orderings.to_csv(folder / "orderings.csv", index=False)
    (folder / "settings.json").write_text(json.dumps(run.settings, indent=1) + "\n")
    s = run.settings
    md = [f"# Tables 3 and 4 reproduced in kind (seeds {s.get('seeds')}, mean ± std over seeds)", "",
          f"Corpus `{s.get('corpus')}`: {s.get('data')}. {s.get('torch_threads')} torch thread(s).", ""]
    if len(run.summary3):
        t3 = summary_text(run.summary3).drop(columns=["exp. error vs teacher ↓", "lip-reader acc. ↑"], errors="ignore")
        md += ["## Table 3 (ExpNet)", "",
               f"ExpNet {s.get('exp_steps')} steps x {s.get('exp_batch')} windows per variant and seed "
               f"({s.get('table3_seconds')} s in all). Lip sync: {s.get('lip_sync')} on the mouth landmarks of the "
               "generated expressions (DefaultMorphableModel stand-in face, frontal; no rendered video), per "
               "held-out clip with its own audio, mean over clips. Mouth landmark error: px at 224 vs the lip-only "
               "teacher. The lip reader's accuracy is not reported (it is the L_read training loss: circular).", "",
               *[f"* {v}" for v in TABLE3_LABELS.values()], "", _markdown(t3), ""]
    if len(run.summary4):
        md += ["## Table 4 (PoseVAE)", "",
               f"PoseVAE {s.get('pose_steps')} steps x {s.get('pose_batch')} windows per variant and seed "
               f"({s.get('table4_seconds')} s in all).", "", *[f"* {v}" for v in TABLE4_LABELS.values()], "",
               _markdown(summary_text(run.summary4)), ""]
    if len(run.orderings):
        md += ["## The paper's orderings", "", "gap = better minus worse, signed so that > 0 is the paper's "
               "ordering; mean and std over seeds (paired).", "",
               _markdown(run.orderings.set_index("ordering (paper)").drop(columns=["better (paper)",
                                                                                    "worse (paper)"])), ""]
    path = folder / "tables.md"
    path.write_text("\n".join(md))
    return path


def parse_phenomena(items: Sequence[str]) -> Phenomena:
    """``["pause_breaths=1", "smiles=0"]`` -> :class:`Phenomena` with those fields changed (numbers, or the text of
    ``nod_source`` / ``nod_direction``); an unknown name or a missing "=" raises ValueError saying which."""
    known = {f.name: f.type for f in fields(Phenomena)}
    changes = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or name not in known:
            raise ValueError(f"--phenomena takes NAME=VALUE with NAME one of {sorted(known)}, got {item!r}")
        default = getattr(Phenomena(), name)
        changes[name] = value if isinstance(default, str) else type(default)(float(value))
    return Phenomena(**changes)


def main(argv=None) -> int:
    """``python -m sadtalker_lib.train.ablation_tables --out DIR``: both tables at the CPU preset over seeds on the
    controlled default corpus (built once, cached) or ``--corpus DIR``; CSV + markdown into ``--out``."""
    p = argparse.ArgumentParser(description="Tables 3 and 4 over seeds (mean ± std), CSV + markdown.")
    p.add_argument("--out", required=True, help="folder for the tables (run folders go to OUT/runs)")
    p.add_argument("--corpus", default=None, help="a corpus folder (default: the controlled default corpus)")
    p.add_argument("--n-clips", type=int, default=36, help="default corpus size (when --corpus is not given)")
    p.add_argument("--phenomena", nargs="+", default=[], metavar="NAME=VALUE",
                   help="default corpus phenomenon strengths (data.corpus.Phenomena fields), e.g. pause_breaths=1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--exp-steps", type=int, default=None, help="ExpNet steps (default: the preset's)")
    p.add_argument("--pose-steps", type=int, default=None, help="PoseVAE steps (default: the preset's)")
    p.add_argument("--pose-train-clips", type=int, default=None, help="at most this many PoseVAE training clips")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precise-bn", type=int, default=None, help="BatchNorm windows (default: the preset's)")
    p.add_argument("--lipreader-steps", type=int, default=None, help="L_read lip reader steps (default: preset's)")
    p.add_argument("--exp-variants", nargs="+", default=None, help="Table 3 rows (default: the paper's four)")
    p.add_argument("--pose-variants", nargs="+", default=None, help="Table 4 variants (default: all five)")
    p.add_argument("--only", choices=["3", "4"], default=None, help="run one table only")
    p.add_argument("--merge", nargs="+", default=None, help="no training: merge folders written before into --out")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    if a.merge:
        path = write_tables(read_tables(*a.merge), out)
        print(path.read_text())
        return 0
    corpus = a.corpus
    if corpus is None:
        from ..notebook import cached_default_corpus

        corpus = cached_default_corpus(out / f"corpus-n{a.n_clips}", a.n_clips, 0, size=64,
                                       **({"phenomena": parse_phenomena(a.phenomena)} if a.phenomena else {}))
    data = ablation_data(corpus, max_pose_train_clips=a.pose_train_clips)
    print(data.describe(), flush=True)
    exp_cfg = getattr(ExpNetTrainConfig, a.preset)(checkpoint_every=0, num_threads=a.threads,
                                                   **({"steps": a.exp_steps} if a.exp_steps else {}))
    pose_cfg = getattr(PoseVAETrainConfig, a.preset)(checkpoint_every=0, num_threads=a.threads,
                                                     **({"steps": a.pose_steps} if a.pose_steps else {}))
    bn = {"precise_bn_windows": a.precise_bn} if a.precise_bn else {}
    exp_cfg = exp_cfg.replace(eval_every=exp_cfg.steps, **bn,
                              **({"lipreader_steps": a.lipreader_steps} if a.lipreader_steps else {}))
    pose_cfg = pose_cfg.replace(eval_every=pose_cfg.steps, **bn)
    run = run_tables(data, a.seeds, exp_cfg, pose_cfg, out / "runs", a.exp_variants, a.pose_variants,
                     tables=[a.only] if a.only else ("3", "4"),
                     log=lambda m: print(m, flush=True))
    path = write_tables(run, out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
