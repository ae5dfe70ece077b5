"""The main job's sizes: the renderer frame size is an option of `sadtalker-lab main`, checked before any work."""
from __future__ import annotations

import pytest

from sadtalker_lib import cli, workbench
from sadtalker_lib.workbench import MainConfig


def test_main_config_rejects_renderer_sizes_the_corpus_cannot_feed():
    assert MainConfig().renderer_size == 64 and MainConfig(renderer_size=128).renderer_size == 128
    for bad in (100, 48, 0, 256):  # not a multiple of 32 (the renderer's networks); nothing; above the 128 px frames
        with pytest.raises(ValueError, match="multiple of 32 up to the corpus' image_size"):
            MainConfig(renderer_size=bad)
    with pytest.raises(ValueError, match=r"image_size \(64 px\)"):
        MainConfig(image_size=64, renderer_size=128)


def test_cli_main_passes_the_renderer_size(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(workbench, "run_main", lambda **kw: seen.update(kw) or tmp_path / "report.html")
    assert cli.main(["main", "--out-dir", str(tmp_path), "--renderer-size", "128"]) == 0
    assert seen["renderer_size"] == 128 and seen["out_dir"] == str(tmp_path)
    assert cli.main(["main", "--out-dir", str(tmp_path)]) == 0 and seen["renderer_size"] is None


def test_main_job_refuses_a_bad_renderer_size_before_any_work(tmp_path, capsys):
    """The real job: exit 2 with what to do, and no run folder written."""
    assert cli.main(["main", "--out-dir", str(tmp_path / "runs"), "--renderer-size", "100"]) == 2
    assert "use a multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match=r"image_size \(64 px\)"):
        workbench.run_main(out_dir=tmp_path / "runs", quick=True, renderer_size=128)
    assert not (tmp_path / "runs").exists()
