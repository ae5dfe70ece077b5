"""Batch generation (sadtalker_lib.batch, `sadtalker-lab generate-batch`): two CPU processes under torchrun on tiny
seeded networks, failing rows recorded without stopping the others, a rerun that skips the finished rows, and the
CSV checks."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from sadtalker_lib.batch import Job, _append_record, job_options, read_jobs, read_records, write_summary
from sadtalker_lib.official.registry import save_networks, seeded_networks, tiny_configs
from sadtalker_lib.video import probe_video

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def _generate_batch(jobs: Path, out: Path, ckpt: Path, processes: int) -> subprocess.CompletedProcess:
    """`sadtalker-lab generate-batch` under torchrun with ``processes`` CPU processes (1: started plainly)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] * (processes > 1)
    return subprocess.run([sys.executable, *launch, "-m", "sadtalker_lib.cli", "generate-batch", str(jobs), "--out",
                           str(out), "--checkpoints", str(ckpt), "--size", "64", "--device", "cpu", "--threads", "1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    save_networks(d / "ckpt", seeded_networks(seed=0), tiny_configs(), size=64)  # a 64 px renderer: fast
    iio.imwrite(d / "portrait.png", skimage.data.astronaut()[::2, ::2])  # 256 x 256
    t = np.arange(int(0.2 * SR)) / SR
    sf.write(d / "speech.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), SR)
    return d


def test_two_processes_bad_rows_and_resume(inputs, tmp_path):
    jobs = inputs / "jobs.csv"
    jobs.write_text("id,image,audio,seed,still,pose_style\n"
                    "a,portrait.png,speech.wav,0,,\n"
                    "b,portrait.png,speech.wav,1,yes,3\n"
                    "missing,no_such.png,speech.wav,0,,\n"
                    "badopt,portrait.png,speech.wav,0,,99\n")  # rows k, k + 2 go to process k: one good row each
    out = tmp_path / "out"
    first = _generate_batch(jobs, out, inputs / "ckpt", processes=2)
    assert first.returncode != 0, first.stderr[-3000:]  # rows failed: the command says so
    assert "wrote" in first.stdout and "Traceback (most recent call last)" in first.stderr, first.stderr[-3000:]
    rows = _summary(out)
    assert list(rows) == ["a", "b", "missing", "badopt"]  # CSV order
    for ok in ("a", "b"):
        assert rows[ok]["status"] == "ok" and rows[ok]["error"] == ""
        info = probe_video(out / rows[ok]["output"])
        assert int(rows[ok]["frames"]) == 5 and info["has_audio"] and float(rows[ok]["render_s"]) > 0
    assert rows["missing"]["status"] == "error" and "no_such.png" in rows["missing"]["error"]
    assert rows["badopt"]["status"] == "error" and "pose_style" in rows["badopt"]["error"]
    assert [rows[k]["process"] for k in rows] == ["0", "1", "0", "1"]  # the rows were shared by both processes
    assert sorted(p.name for p in (out / "records").iterdir()) == ["part-0.jsonl", "part-1.jsonl"]
    stamps = {k: (out / f"{k}.mp4").stat().st_mtime_ns for k in ("a", "b")}

    # rerun (here as one plain process: the rows still to do are shared out afresh, whatever the process count)
    second = _generate_batch(jobs, out, inputs / "ckpt", processes=1)
    assert second.returncode != 0, second.stderr[-3000:]  # the bad rows were tried again and fail again
    assert "2 finished before, 2 run now" in second.stdout, second.stdout
    assert {k: (out / f"{k}.mp4").stat().st_mtime_ns for k in ("a", "b")} == stamps  # not regenerated
    lines = [json.loads(x) for p in sorted((out / "records").iterdir()) for x in p.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == ["a", "b", "badopt", "badopt", "missing", "missing"]
    rows2 = _summary(out)
    assert [rows2[k]["status"] for k in rows2] == ["ok", "ok", "error", "error"]
    assert rows2["a"]["finished_at"] == rows["a"]["finished_at"]


def test_read_jobs_checks_the_csv(tmp_path):
    p = tmp_path / "jobs.csv"
    with pytest.raises(FileNotFoundError):
        read_jobs(tmp_path / "none.csv")
    p.write_text("image,speech\nx.png,y.wav\n")
    with pytest.raises(ValueError, match="'audio' column"):
        read_jobs(p)
    p.write_text("image,audio,colour\nx.png,y.wav,red\n")
    with pytest.raises(ValueError, match="unknown column"):
        read_jobs(p)
    p.write_text("id,image,audio\nsame,x.png,y.wav\nsame,x.png,y.wav\n")
    with pytest.raises(ValueError, match="used twice"):
        read_jobs(p)
    p.write_text("id,image,audio\n../up,x.png,y.wav\n")
    with pytest.raises(ValueError, match="letters"):
        read_jobs(p)
    p.write_text("portrait,audio,input_yaw,still,ref_pose\nx.png,y.wav,0 20 -10,true,ref.mp4\nx.png,y.wav,,,\n")
    jobs = read_jobs(p)
    assert [j.id for j in jobs] == ["row0001", "row0002"] and jobs[0].image == tmp_path / "x.png"
    opts = job_options(jobs[0])
    assert list(opts.input_yaw) == [0, 20, -10] and opts.still and opts.ref_pose == str(tmp_path / "ref.mp4")
    assert job_options(jobs[1]) == job_options(Job(row=2, id="x", image=p, audio=p))  # empty cells: defaults
    with pytest.raises(ValueError, match="column 'still'"):
        job_options(Job(row=1, id="x", image=p, audio=p, options={"still": "maybe"}))


def test_torn_record_lines_are_ignored_and_missing_rows_pending(tmp_path):
    jobs = [Job(row=1, id="a", image=Path("a.png"), audio=Path("a.wav")),
            Job(row=2, id="b", image=Path("b.png"), audio=Path("b.wav"))]
    (tmp_path / "records").mkdir()
    (tmp_path / "a.mp4").write_bytes(b"x")
    ok = {"id": "a", "status": "ok", "output": "a.mp4", "finished_at": "2026-01-01T00:00:00"}
    (tmp_path / "records" / "part-0.jsonl").write_text(json.dumps(ok) + "\n" + '{"id": "b", "status": "o')
    assert set(read_records(tmp_path)) == {"a"}
    _append_record(tmp_path / "records" / "part-0.jsonl", {**ok, "id": "c"})  # after the torn line: kept whole
    assert set(read_records(tmp_path)) == {"a", "c"}
    rows = {r["id"]: r for r in csv.DictReader(open(write_summary(jobs, tmp_path), newline=""))}
    assert rows["a"]["status"] == "ok" and rows["b"]["status"] == "pending"
    (tmp_path / "a.mp4").unlink()  # an output deleted after the fact is not reported as done
    rows = {r["id"]: r for r in csv.DictReader(open(write_summary(jobs, tmp_path), newline=""))}
    assert rows["a"]["status"] == "error" and "missing" in rows["a"]["error"]
