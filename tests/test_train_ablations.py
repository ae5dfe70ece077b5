"""Tables 3 and 4 at a tiny budget (sadtalker_lib.train.ablations): every requested variant is trained with its
switches, scored on the same held-out data, labelled with the paper's row names, and a finished run folder is
reused rather than retrained. Synthetic windows, seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.coeffs import ANGLE
from sadtalker_lib.data.windows import split_by_clip, synthetic_exp_windows, synthetic_pose_windows
from sadtalker_lib.train.ablations import (BA_ABOVE_CHANCE, BA_OTHER_AUDIO, BEATS_PER_S, EXPNET_ROWS,
                                           LINEAR_REF_POSE_ROW, PAPER_TABLE3, PAPER_TABLE4, POSE_MSE_VS_STILL,
                                           POSEVAE_ROWS, RANDOM_SEQUENCE_ROW, STILL_HEAD_ROW, AblationExplorer,
                                           run_expnet_ablations, run_posevae_ablations)
from sadtalker_lib.train.expnet import ExpNetTrainConfig
from sadtalker_lib.train.posevae import PoseVAETrainConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_tables_match_the_paper():
    assert PAPER_TABLE3.loc[EXPNET_ROWS["full"], "LSE-C ↑"] == 7.290
    assert PAPER_TABLE3.loc[EXPNET_ROWS["no_ref_no_read"], "LSE-D ↓"] == 9.532
    assert PAPER_TABLE4.loc[POSEVAE_ROWS[("full", "mixed")], "Beat Align ↑"] == 0.293
    assert PAPER_TABLE4.loc[POSEVAE_ROWS[("no_gan", "fixed")], "Diversity ↑"] == 0.2500
    assert len(PAPER_TABLE4) == 7 and len(PAPER_TABLE3) == 5


def test_expnet_ablations(tmp_path):
    train, held = split_by_clip(synthetic_exp_windows(32, seed=0), heldout_fraction=0.25, seed=0)
    cfg = ExpNetTrainConfig.cpu(steps=4, eval_every=2, checkpoint_every=0, batch_size=4, precise_bn_windows=8,
                                lipreader_steps=20, num_threads=1)
    res = run_expnet_ablations(train, held, ["full", "real_coeffs"], cfg, tmp_path, progress=False)
    assert list(res.table.index) == [EXPNET_ROWS["full"], EXPNET_ROWS["real_coeffs"]]
    assert list(res.table["variant"]) == ["full", "real_coeffs"]
    values = res.table.drop(columns="variant").to_numpy(float)
    assert np.isfinite(values).all()
    assert res.runs["real_coeffs"].config.target == "real" and res.runs["full"].config.target == "lip"
    assert res.before is not None and res.before.name == "untrained"
    # the variants are different models trained from the same start
    a, b = (res.runs[n].model.state_dict() for n in ("full", "real_coeffs"))
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    # a finished folder is reused: same weights, same table
    again = run_expnet_ablations(train, held, ["full"], cfg, tmp_path, progress=False)
    for k, v in again.runs["full"].model.state_dict().items():
        torch.testing.assert_close(v, a[k])
    with pytest.raises(KeyError, match="unknown ExpNet ablation"):
        run_expnet_ablations(train, held, ["no_such_row"], cfg, tmp_path, progress=False)


def _pose_inputs():
    train, held = split_by_clip(synthetic_pose_windows(24, with_mel=False, seed=0), heldout_fraction=0.25, seed=0)
    rng = np.random.default_rng(0)
    t = 40
    clips = [dict(mel=rng.standard_normal((t, 1, 80, 16)).astype(np.float32),
                  coeffs=np.concatenate([np.zeros((t, 64)), 0.05 * np.sin(np.arange(t)[:, None] / (3 + k)
                                                                          + np.arange(6))], 1).astype(np.float32),
                  audio=(0.3 * rng.standard_normal(t * 640)).astype(np.float32), style_id=k) for k in range(3)]
    cfg = PoseVAETrainConfig.cpu(steps=3, eval_every=3, checkpoint_every=0, batch_size=4, precise_bn_windows=8,
                                 num_threads=1)
    return train, held, clips, cfg


def test_posevae_ablations(tmp_path):
    train, held, clips, cfg = _pose_inputs()
    res = run_posevae_ablations(train, held, clips, ["full", "no_gan"], cfg, tmp_path, num_styles=3, progress=False)
    trained = [POSEVAE_ROWS[("full", "fixed")], POSEVAE_ROWS[("no_gan", "fixed")], POSEVAE_ROWS[("full", "mixed")]]
    assert list(res.table.index) == trained + ["Real (corpus motion)", STILL_HEAD_ROW, RANDOM_SEQUENCE_ROW,
                                               LINEAR_REF_POSE_ROW]
    scores = res.table.loc[trained + ["Real (corpus motion)"], ["Diversity ↑", "Beat Align ↑"]].to_numpy(float)
    assert np.isfinite(scores).all() and (scores[:, 0] > 0).all()
    # the prediction error beside the trivial baselines: a still head is 1 by definition
    h = res.runs["full"].heldout
    assert res.table.loc[trained[0], POSE_MSE_VS_STILL] == pytest.approx(h.pose_mse / h.still_head)
    assert res.table.loc[STILL_HEAD_ROW, POSE_MSE_VS_STILL] == 1.0
    assert res.table.loc[RANDOM_SEQUENCE_ROW, POSE_MSE_VS_STILL] == pytest.approx(
        h.random_training_sequence / h.still_head)
    assert res.table.loc[LINEAR_REF_POSE_ROW, POSE_MSE_VS_STILL] == pytest.approx(h.linear_in_rho0 / h.still_head)
    assert np.isfinite(res.table.loc[trained, [BA_ABOVE_CHANCE, BEATS_PER_S, BA_OTHER_AUDIO]].to_numpy(float)).all()
    assert res.table.loc["Real (corpus motion)", "Diversity ↑"] == pytest.approx(
        np.mean([np.std(c["coeffs"][:, ANGLE], axis=0) for c in clips]), rel=0.05)
    assert set(res.runs) == {"full", "no_gan"} and not res.runs["no_gan"].config.use_gan
    assert np.isfinite(res.before.to_numpy(float)).all()
    with pytest.raises(KeyError, match="unknown PoseVAE ablation"):
        run_posevae_ablations(train, held, clips, ["w/o everything"], cfg, tmp_path, progress=False)


def test_explorer_continues_training_and_draws(tmp_path):
    """The notebook-08 controller: 'continue training' resumes the chosen variants for more steps and replaces
    their rows; draw() plots any metric (the widget itself only wires these two to ipywidgets)."""
    import matplotlib

    matplotlib.use("Agg")
    exp_train, exp_held = split_by_clip(synthetic_exp_windows(32, seed=0), heldout_fraction=0.25, seed=0)
    exp_cfg = ExpNetTrainConfig.tiny(steps=2, checkpoint_every=0, num_threads=1)
    exp = run_expnet_ablations(exp_train, exp_held, ["full"], exp_cfg, tmp_path / "expnet", progress=False)
    train, held, clips, pose_cfg = _pose_inputs()
    pose = run_posevae_ablations(train, held, clips, ["no_gan"], pose_cfg.replace(steps=2), tmp_path / "posevae",
                                 num_styles=3, progress=False)
    ex = AblationExplorer(exp, pose, exp_args=(exp_train, exp_held), pose_args=(train, held, clips),
                          exp_config=exp_cfg, pose_config=pose_cfg.replace(steps=2), out_dir=tmp_path, num_styles=3)
    assert "untrained" in list(ex.tables["Table 3 (ExpNet)"]["variant"])
    before = {k: v.clone() for k, v in exp.runs["full"].model.state_dict().items()}
    table = ex.continue_training("Table 3 (ExpNet)", ["full", "untrained"], 2)
    assert ex.exp_config.steps == 4 and exp.runs["full"].step == 4
    assert list(table["variant"]).count("full") == 1  # the row was replaced, not appended
    assert any(not torch.equal(before[k], v) for k, v in exp.runs["full"].model.state_dict().items()
               if v.is_floating_point())
    fig = ex.draw("Table 4 (PoseVAE)", list(ex.tables["Table 4 (PoseVAE)"].index), "Beat Align ↑")
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == len(ex.tables["Table 4 (PoseVAE)"])
    box = ex.widget()
    assert len(box.children) == 3


# --- Tables 3 / 4 over seeds (sadtalker_lib.train.ablation_tables) and the phenomenon knobs (ablation_knobs) --------
def _per_seed(rows: dict[str, list[float]], metric: str, variant: str = "v"):
    import pandas as pd

    frames = [pd.DataFrame({"variant": [variant] * len(rows), metric: [v[s] for v in rows.values()], "seed": s},
                           index=pd.Index(list(rows), name="method")) for s in range(len(next(iter(rows.values()))))]
    return pd.concat(frames)


def test_summary_and_orderings_over_seeds(tmp_path):
    from sadtalker_lib.train.ablation_tables import (LSE_D, ORDERINGS, TableRun, check_orderings, read_tables,
                                                     summarize, summary_text, write_tables)

    full, worse, real = EXPNET_ROWS["full"], EXPNET_ROWS["no_ref_no_read"], EXPNET_ROWS["real_coeffs"]
    # LSE-D (lower is better): full beats w/o beta_0 in 2 of 3 seeds and on average; real coeffs. beat full
    t3 = _per_seed({full: [1.0, 1.2, 0.8], worse: [1.5, 1.1, 1.3], real: [0.9, 1.0, 0.7]}, LSE_D)
    fixed, mixed = POSEVAE_ROWS[("full", "fixed")], POSEVAE_ROWS[("full", "mixed")]
    t4 = _per_seed({fixed: [0.02, 0.03, 0.02], mixed: [0.02, 0.04, 0.02]}, "Diversity ↑")
    summary = summarize(t3)
    assert list(summary.index) == [full, worse, real]
    assert summary.loc[full, f"{LSE_D} mean"] == pytest.approx(1.0)
    assert summary.loc[full, f"{LSE_D} std"] == pytest.approx(np.std([1.0, 1.2, 0.8], ddof=1))
    assert (summary["seeds"] == 3).all()
    assert summary_text(summary).loc[worse, LSE_D] == f"{1.3:.4f} ± {0.2:.4f}"
    order = check_orderings({"3": t3, "4": t4}).set_index("ordering (paper)")
    assert len(order) == 3  # the LSE-C and Beat Align orderings have no data here and are left out
    beta0 = order.loc[ORDERINGS[0].claim]
    assert bool(beta0["ordering holds"]) and beta0["seeds holding"] == "2/3"
    assert beta0["gap mean"] == pytest.approx(np.mean([0.5, -0.1, 0.5]))
    lip = order.loc[ORDERINGS[2].claim]
    assert not bool(lip["ordering holds"]) and lip["seeds holding"] == "0/3"
    style = order.loc[ORDERINGS[5].claim]  # ">=": ties count
    assert bool(style["ordering holds"]) and style["seeds holding"] == "3/3"
    # the files: CSV + markdown, read back to the same orderings
    run = TableRun(t3, t4, t3.iloc[:0], summary, summarize(t4), check_orderings({"3": t3, "4": t4}),
                   {"seeds": [0, 1, 2]})
    md = write_tables(run, tmp_path).read_text()
    assert "± " in md and "Table 3" in md and "Table 4" in md and "ordering" in md
    again = read_tables(tmp_path)
    assert again.orderings["gap mean"].tolist() == pytest.approx(run.orderings["gap mean"].tolist())
    # a second folder of the same seeds (variants split over processes) repeats the shared rows: counted once
    write_tables(run, tmp_path / "other")
    both = read_tables(tmp_path, tmp_path / "other")
    assert len(both.table4) == len(t4) and (both.summary4["seeds"] == 3).all()
    assert both.summary4["Diversity ↑ std"].tolist() == pytest.approx(run.summary4["Diversity ↑ std"].tolist())


def test_lip_sync_of_generated_expressions_per_clip():
    from sadtalker_lib.metrics.lipsync import AudioToMouth, LandmarkSyncScorer
    from sadtalker_lib.metrics.lse import VSHIFT
    from sadtalker_lib.train.ablation_tables import LSE_C, LSE_D, expression_lip_sync, lip_sync_scorer

    torch.manual_seed(0)
    w = synthetic_exp_windows(24, seed=0)  # 6 clips of 4 windows x 5 frames
    audios = [0.1 * np.random.default_rng(k).standard_normal(20 * 640).astype(np.float32) for k in range(6)]
    scorer = LandmarkSyncScorer(AudioToMouth())
    res = expression_lip_sync(w.exp_lip, w, audios, scorer)
    assert np.isfinite(list(res.values())).all() and res[LSE_C] >= 0 and res[LSE_D] > 0
    assert 0 <= res["|offset| (frames) ↓"] <= VSHIFT
    with pytest.raises(IndexError):
        expression_lip_sync(w.exp_lip, w, audios[:2], scorer)
    with pytest.raises(ValueError, match="needs a path"):
        lip_sync_scorer(train_steps=10)


def test_expression_diagnostics_separate_resting_shape_and_irrelevant_motion():
    """The teacher scores 0 on both; a wrong constant per clip (a resting shape) is removed from the motion error;
    the real coefficients reproduce all of their audio-irrelevant motion, half of it half, a constant none."""
    from sadtalker_lib.train.ablation_tables import IRRELEVANT_SHARE, MOUTH_MOTION_PX, expression_diagnostics

    w = synthetic_exp_windows(24, seed=0)
    w.exp_real = w.exp_lip + 0.3 * torch.randn_like(w.exp_lip)
    teacher = expression_diagnostics(w.exp_lip, w)
    assert teacher[MOUTH_MOTION_PX] == pytest.approx(0, abs=1e-4)
    assert teacher[IRRELEVANT_SHARE] == pytest.approx(0, abs=1e-6)
    rest = torch.randn(int(w.clip.max()) + 1, w.exp_lip.shape[-1])[w.clip][:, None]  # one offset per clip
    wrong_rest = expression_diagnostics(w.exp_lip + rest, w)
    assert wrong_rest[MOUTH_MOTION_PX] == pytest.approx(0, abs=1e-3)
    assert wrong_rest[IRRELEVANT_SHARE] == pytest.approx(0, abs=1e-6)
    assert expression_diagnostics(w.exp_real, w)[IRRELEVANT_SHARE] == pytest.approx(1)
    half = expression_diagnostics(0.5 * (w.exp_lip + w.exp_real), w)
    assert half[IRRELEVANT_SHARE] == pytest.approx(0.5) and half[MOUTH_MOTION_PX] > 0.01
    w.exp_real = None
    assert np.isnan(expression_diagnostics(w.exp_lip, w)[IRRELEVANT_SHARE])


def test_knobs_name_phenomena_and_variants(tmp_path):
    from sadtalker_lib.data.corpus.phenomena import Phenomena
    from sadtalker_lib.train.ablation_knobs import KNOBS, _variant, knob_corpus, KnobSettings
    from sadtalker_lib.train.expnet import EXPNET_ABLATIONS
    from sadtalker_lib.train.posevae import POSEVAE_ABLATIONS

    assert {"rest_spread", "expression_drift", "speech_nods", "free_motion"} <= set(KNOBS)
    for knob, order in KNOBS.items():
        assert getattr(Phenomena(**{knob: 2.0}), knob) == 2.0
        rows, known = (EXPNET_ROWS, EXPNET_ABLATIONS) if order.table == "3" else (POSEVAE_ROWS, POSEVAE_ABLATIONS)
        assert _variant(order.better, rows) in known and _variant(order.worse, rows) in known
    with pytest.raises(KeyError, match="unknown knob"):
        knob_corpus(tmp_path, "loudness", 1.0, KnobSettings())


def test_tables_cli_phenomena_arguments():
    from sadtalker_lib.data.corpus.phenomena import Phenomena
    from sadtalker_lib.train.ablation_tables import parse_phenomena

    got = parse_phenomena(["pause_breaths=0", "identity_variants=3", "nod_source=energy"])
    assert got == Phenomena(pause_breaths=0.0, identity_variants=3, nod_source="energy")
    assert isinstance(got.identity_variants, int)
    for bad in (["loudness=1"], ["pause_breaths"]):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_phenomena(bad)
    with pytest.raises(ValueError, match=">= 0"):
        parse_phenomena(["smiles=-1"])


def test_markdown_tables_escape_pipes_in_cells():
    import re

    import pandas as pd

    from sadtalker_lib.train.ablation_tables import _markdown

    df = pd.DataFrame({"|offset| (frames) ↓": [0.5, 1.0], "LSE-C": [0.3, 0.2]},
                      index=pd.Index(["a|b", "c"], name="method"))
    lines = _markdown(df).splitlines()
    # every row splits into the same 3 cells (a raw "|" inside a cell would add columns)
    assert {len(re.split(r"(?<!\\)\|", line)) - 2 for line in lines} == {3}
    assert "\\|offset\\|" in lines[0] and lines[2].startswith("| a\\|b | 0.5000 |")
