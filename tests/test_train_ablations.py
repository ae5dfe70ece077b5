"""Tables 3 and 4 at a tiny budget (sadtalker_lib.train.ablations): every requested variant is trained with its
switches, scored on the same held-out data, labelled with the paper's row names, and a finished run folder is
reused rather than retrained. Synthetic windows, seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.coeffs import ANGLE
from sadtalker_lib.data.windows import split_by_clip, synthetic_exp_windows, synthetic_pose_windows
from sadtalker_lib.train.ablations import (EXPNET_ROWS, PAPER_TABLE3, PAPER_TABLE4, POSEVAE_ROWS, AblationExplorer,
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
    assert list(res.table.index) == [POSEVAE_ROWS[("full", "fixed")], POSEVAE_ROWS[("no_gan", "fixed")],
                                     POSEVAE_ROWS[("full", "mixed")], "Real (corpus motion)"]
    scores = res.table[["Diversity ↑", "Beat Align ↑"]].to_numpy(float)
    assert np.isfinite(scores).all() and (scores[:, 0] > 0).all()
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
