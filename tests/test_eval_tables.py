"""eval.evaluate -> Table-1-shaped DataFrame; the paper's rows; n/a cells; video reading for evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from _eval_synthetic import SR, face_clip, faceless_clip
from conftest import SHARED
from sadtalker_lib.metrics.syncnet import SyncNet
from sadtalker_lib.train.syncnet import save_trained_syncnet
from sadtalker_lib.metrics.tables import (GROUPS, METRICS, display_table, evaluate, paper_table, paper_table1,
                                          plot_metrics, side_by_side, table_notes)
from sadtalker_lib.metrics.video_io import Clip, NoAudioTrackError, check_same_timing, load_clip


# ---------------------------------------------------------------------------------------------
# the paper's table
# ---------------------------------------------------------------------------------------------
def test_paper_table1_layout():
    t = paper_table1()
    assert list(t.columns.get_level_values(0).unique()) == list(GROUPS)
    assert list(t.columns.get_level_values(1)) == list(METRICS)
    assert t.loc["SadTalker (paper)", ("Lip Synchronization", "LSE-C")] == 7.290
    assert np.isnan(t.loc["Wav2Lip*", ("Learned Head Motion", "Diversity")])
    assert ("Wav2Lip*", "Diversity") in t.attrs["notes"]
    assert paper_table1(eye_blink=True).iloc[:, 0].tolist()[-1] == "controllable"
    with pytest.raises(ValueError):
        paper_table("9")


@pytest.mark.skipif(not (SHARED / "paper" / "sadtalker-paper.txt").is_file(), reason="paper text not present")
def test_paper_rows_match_the_paper_text():
    text = (SHARED / "paper" / "sadtalker-paper.txt").read_text()
    block = text[text.index("Real Video\tN./A."): text.index("Table 1. Comparison")]
    rows = [ln.split("\t") for ln in block.strip().splitlines()]
    t = paper_table1()
    for row, (name, cells) in zip(t.index, [(r[0], r[2:]) for r in rows]):
        values = [np.nan if c.strip().startswith("N./A") else float(c) for c in cells]
        np.testing.assert_array_equal(t.loc[row].to_numpy(float), np.array(values, float), err_msg=name)


# ---------------------------------------------------------------------------------------------
# evaluate on small synthetic clips
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_here(tmp_path_factory):
    torch.manual_seed(0)
    return save_trained_syncnet(SyncNet(), tmp_path_factory.mktemp("sn") / "syncnet_trained_here.pt")


@pytest.fixture(scope="module")
def table(trained_here):
    real = [face_clip(10, seed=0, name="real0")]
    gen_a = [face_clip(10, seed=1, name="a0")]
    gen_b = [Clip(frames=face_clip(10, seed=2).frames, audio=None, name="b0_silent")]
    return evaluate({"method A": gen_a, "method B": gen_b}, real=real, syncnet=trained_here,
                    fid_weights="/nonexistent/pt_inception.pth", progress=False)


def test_evaluate_table_shape_labels_and_na_notes(table):
    assert list(table.index) == ["Real Video", "method A", "method B"]
    assert list(table.columns.get_level_values(0).unique()) == list(GROUPS)
    labels = list(table.columns.get_level_values(1))
    assert labels == ["LSE-C [trained-here]", "LSE-D [trained-here]", "Diversity [solvePnP]",
                      "Beat Align [solvePnP]", "FID", "CPBD", "CSIM [dlib]"]
    notes = table.attrs["notes"]
    # FID: weights missing -> n/a everywhere, with the reason
    assert table[("Video Quality", "FID")].isna().all()
    assert "FID Inception weights not found" in notes[("method A", "FID")][0]
    # method B has no audio: LSE and Beat Align n/a with the reason; the other columns are numbers
    for lb in ("LSE-C [trained-here]", "LSE-D [trained-here]", "Beat Align [solvePnP]"):
        group = "Lip Synchronization" if lb.startswith("LSE") else "Learned Head Motion"
        assert np.isnan(table.loc["method B", (group, lb)])
        assert any("no audio track" in n for n in notes[("method B", lb)])
    for col in [("Learned Head Motion", "Diversity [solvePnP]"), ("Video Quality", "CPBD"),
                ("Video Quality", "CSIM [dlib]")]:
        assert table[col].notna().all()
    assert np.isfinite(table.loc["method A", ("Lip Synchronization", "LSE-D [trained-here]")])
    assert table.loc["Real Video", ("Video Quality", "CSIM [dlib]")] == pytest.approx(1.0, abs=0.05)
    # every NaN cell has a note
    for row in table.index:
        for group, lb in table.columns:
            if pd.isna(table.loc[row, (group, lb)]):
                assert notes.get((row, lb)), (row, lb)
    assert set(table.attrs["per_video"]["video"]) == {"real0", "a0", "b0_silent"}


def test_presenting_a_table(table):
    shown = display_table(table)
    assert shown.loc["method B", ("Video Quality", "FID ↓")] == "n/a"
    assert len(table_notes(table)) >= 5
    both = side_by_side(table)
    assert "trained-here" in both.index.get_level_values(0)[-1] and both.shape[1] == len(METRICS)
    assert both.loc[both.index.get_level_values(0)[0]].loc["SadTalker (paper)"][("Video Quality", "CPBD")] == 0.335
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_metrics(table, paper_table1())
    assert len([a for a in fig.axes if a.has_data()]) == len(METRICS)


def test_fid_column_with_an_injected_feature_model():
    def colour_stats(x):  # stands in for pytorch-fid's InceptionV3: [B, 3, H, W] -> [[B, 6, 1, 1]]
        return [torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)[..., None, None]]

    real = [face_clip(10, seed=0, name="r")]
    darker = Clip(frames=(face_clip(10, seed=1).frames * 0.7).astype(np.uint8), name="dark")
    t = evaluate({"same": [face_clip(10, seed=0, name="s")], "darker": [darker]}, real=real, metrics=["FID"],
                 fid_weights=colour_stats, progress=False)
    fid = t[("Video Quality", "FID")]
    assert abs(fid["Real Video"]) < 1e-6 and abs(fid["same"]) < 1e-6 and fid["darker"] > 1e-3
    t = evaluate({"same": [face_clip(10, name="s")]}, metrics=["FID"], fid_weights=colour_stats, progress=False)
    assert np.isnan(t.iloc[0, 0]) and "needs real videos" in t.attrs["notes"][("same", "FID")][0]


def test_evaluate_bad_input(trained_here, monkeypatch):
    clip = face_clip(10, name="g")
    with pytest.raises(ValueError, match="different lengths"):
        evaluate({"m": [face_clip(16, name="long")]}, real=[clip], metrics=["CSIM"], progress=False)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate({"m": [clip]}, metrics=["PSNR"], progress=False)
    t = evaluate({"m": [faceless_clip()]}, metrics=["CPBD", "CSIM", "Diversity"], progress=False)
    assert [lb for _, lb in t.columns] == ["Diversity [solvePnP]", "CPBD", "CSIM [dlib]"]
    assert np.isnan(t.iloc[0, 0]) and t.iloc[0, 1] == 0.0 and np.isnan(t.iloc[0, 2])  # flat frames: CPBD 0
    assert any("no face" in n for n in t.attrs["notes"][("m", "CSIM [dlib]")])
    # no SyncNet weights anywhere -> LSE n/a with where-to-put-it
    monkeypatch.setenv("SADTALKER_LAB_CACHE", str(trained_here.parent / "empty"))
    t = evaluate({"m": [clip]}, metrics=["LSE-C", "LSE-D"], progress=False)
    assert t.isna().all().all() and "syncnet_v2.model" in t.attrs["notes"][("m", "LSE-C")][0]


# ---------------------------------------------------------------------------------------------
# reading videos
# ---------------------------------------------------------------------------------------------
def test_load_clip_audio_and_square_crop(tmp_path):
    from sadtalker_lib.video import write_video

    n = 30
    frames = np.zeros((n, 96, 128, 3), np.uint8)
    frames[:, :, 48:80] = 255  # a white vertical band in the middle: survives the centre crop
    audio = (0.2 * np.sin(2 * np.pi * 300 * np.arange(2 * SR) / SR)).astype(np.float32)
    with_audio = write_video(tmp_path / "a.mp4", frames, fps=25, audio=(audio, SR))
    silent = write_video(tmp_path / "s.mp4", frames, fps=25)
    clip = load_clip(with_audio, size=64)
    assert clip.frames.shape == (n, 64, 64, 3) and clip.fps == 25
    assert abs(len(clip.audio) - n * 640) <= 2 * 640  # cut to the frames' duration (1.2 s, not 2 s; AAC framing)
    assert clip.frames[:, :, 28:36].mean() > 200 and clip.frames[:, :, :8].mean() < 30
    assert any("centre-cropped" in n for n in clip.notes)
    assert load_clip(silent).audio is None
    with pytest.raises(NoAudioTrackError, match="no audio track"):
        load_clip(silent, require_audio=True)
    with pytest.raises(NoAudioTrackError):
        load_clip(silent).require_audio()
    fast = load_clip(with_audio, fps=50, size=None)
    with pytest.raises(ValueError, match="fps"):
        check_same_timing(clip, fast)
    with pytest.raises(ValueError, match="different lengths"):
        check_same_timing(clip, Clip(frames=clip.frames[:20]))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        Clip(frames=np.zeros((4, 8, 8)))
