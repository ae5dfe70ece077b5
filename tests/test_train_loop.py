"""The one training loop (sadtalker_lib.train.loop) and the training CLI: two CPU processes (torchrun, gloo) take the
same steps as one process on the same global batch; a killed and resumed run ends bit-exact; the CLI writes the
official layout that load_official reads; gradient accumulation splits a step without changing it."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_same_run, needs_espeak
from sadtalker_lib.cli import main as cli
from sadtalker_lib.data.windows import synthetic_exp_windows
from sadtalker_lib.models.expnet import ExpNet
from sadtalker_lib.models.posevae import PoseVAE
from sadtalker_lib.official.io import find_official_file, load_official, read_checkpoint
from sadtalker_lib.train import loop
from sadtalker_lib.train.expnet import default_morphable_model, project_expression
from sadtalker_lib.train.lipreader import LIPREADER_FILE, LipReaderStage, LipReaderTrainConfig, mouth_features
from sadtalker_lib.train.syncnet import SyncTrainConfig, train_syncnet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 clips of 1.6 s (40 frames: PoseVAE's 33-frame windows fit), 64 px."""
    from conftest import espeak_available

    if not espeak_available():
        pytest.skip("eSpeak NG not installed")
    root = tmp_path_factory.mktemp("loop_corpus")
    assert cli(["corpus", "build", "--default", "--out", str(root), "--clips", "3", "--size", "64",
                "--max-seconds", "1.6"]) == 0
    return root


def _state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _log(folder) -> list[dict]:
    with open(folder / "log.csv") as f:
        return list(csv.DictReader(f))


@needs_espeak
def test_two_processes_equal_one_process(corpus, tmp_path):
    """torchrun --nproc_per_node 2 (gloo) on a global batch of 16 = one process on the same 16 windows.

    The lip reader has no BatchNorm (torch's SyncBatchNorm does not run on CPUs: a multi-process CPU run of a stage
    with BatchNorm normalises each process's half on its own). Two steps: Adam's first steps are ~lr * sign(grad),
    so entries whose gradient is at rounding level (units next to a dead ReLU) amplify the ~1e-7 differences of a
    different summation order; over more steps a few weights drift apart by up to lr, as with any reordering.
    """
    args = ["train", "lipreader", "--corpus", str(corpus), "--preset", "tiny", "--steps", "2", "--batch-size", "16",
            "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "sadtalker_lib.cli", *args, "--out", str(tmp_path / "two")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cli([*args, "--out", str(tmp_path / "one")]) == 0
    assert cli([*args[:-4], "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "half")]) == 0
    one, two = _state(tmp_path / "one" / LIPREADER_FILE), _state(tmp_path / "two" / LIPREADER_FILE)
    assert _max_diff(one, two) <= 1e-5
    # the comparison can fail: one process on a different (half-size) batch ends far away
    assert _max_diff(one, _state(tmp_path / "half" / LIPREADER_FILE)) > 1e-4
    # the logged training loss is the global batch's (averaged over the processes), written once by rank 0
    rows1, rows2 = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [(r["step"], r["split"]) for r in rows1] == [(r["step"], r["split"]) for r in rows2]
    for r1, r2 in zip(rows1, rows2):
        if r1["split"] == "train":
            assert float(r1["loss"]) == pytest.approx(float(r2["loss"]), rel=1e-5)


@needs_espeak
def test_cli_writes_the_official_layout(corpus, tmp_path):
    for stage, network, model in (("expnet", "audio2exp", ExpNet), ("posevae", "audio2pose", PoseVAE)):
        out = tmp_path / stage
        assert cli(["train", stage, "--corpus", str(corpus), "--preset", "tiny", "--out", str(out),
                    "--threads", "1"]) == 0
        path = find_official_file(network, out)
        assert path.parent == out and read_checkpoint(path)["epoch"] == 4  # the tiny preset's steps
        net = load_official(model(), network, out)  # strict: every key and shape
        assert all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point())
        ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert len(ckpts) == 2 and ckpts[-1].endswith("000004-model.pth")  # pruned to keep_checkpoints
        rows = _log(out)
        assert rows[0]["split"] == "heldout" and rows[0]["step"] == "0" and rows[-1]["step"] == "4"
    with pytest.raises(SystemExit):
        cli(["train", "expnet", "--corpus", str(corpus), "--preset", "huge", "--out", str(tmp_path / "x")])
    assert cli(["train", "no_such_stage", "--corpus", str(corpus), "--out", str(tmp_path / "y")]) == 2


@needs_espeak
def test_cli_killed_and_resumed_is_bit_exact(corpus, tmp_path):
    base = ["train", "expnet", "--corpus", str(corpus), "--preset", "tiny", "--threads", "1"]
    assert cli([*base, "--out", str(tmp_path / "full")]) == 0
    assert cli([*base, "--out", str(tmp_path / "cut"), "--stop-after", "3"]) == 0  # "killed" after step 3
    assert not (tmp_path / "cut" / "auido2exp_00300-model.pth").exists()
    torch.rand(5)  # the resumed run must not depend on this process's RNG
    assert cli([*base, "--out", str(tmp_path / "cut"), "--resume"]) == 0  # continues from the step-2 checkpoint
    a = read_checkpoint(tmp_path / "full" / "auido2exp_00300-model.pth")["model"]
    b = read_checkpoint(tmp_path / "cut" / "auido2exp_00300-model.pth")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _log(tmp_path / "full") == _log(tmp_path / "cut")


def _lip_data(n: int = 32):
    w = synthetic_exp_windows(n, seed=3)
    with torch.no_grad():
        return mouth_features(project_expression(default_morphable_model(), w.exp_lip)), w.viseme


def _lip_run(folder, stop_after=None, **changes):
    feats, labels = _lip_data()
    stage = LipReaderStage(feats, labels, LipReaderTrainConfig.tiny(**changes), heldout=(feats[:8], labels[:8]))
    res = loop.run(stage, folder, stop_after=stop_after)
    return SimpleNamespace(model=stage.model, history=res.history, final=res.final)


def test_lipreader_stage_resumes_bit_exact(tmp_path):
    full = _lip_run(tmp_path / "full")
    cut = _lip_run(tmp_path / "cut", stop_after=5)
    assert cut.final is None and (tmp_path / "cut" / "checkpoints" / "lipreader_000004-model.pth").is_file()
    resumed = _lip_run(tmp_path / "cut")
    assert_same_run(full, resumed)
    assert full.final.name == LIPREADER_FILE and full.history.last("accuracy") >= 0


def test_lr_milestones_decay_every_optimizer_and_resume_across_them(tmp_path):
    """lr_milestones (0.5,) of 6 steps: steps 3-5 at lr x 0.1, in the optimizer and in the weights; a run killed
    before the milestone and resumed after it ends bit-exact with the uninterrupted one."""
    cfg = LipReaderTrainConfig.tiny(lr_milestones=(0.5,))
    assert [cfg.lr_factor(s) for s in range(6)] == [1, 1, 1, 0.1, 0.1, 0.1]
    feats, labels = _lip_data()
    stage = LipReaderStage(feats, labels, cfg, heldout=(feats[:8], labels[:8]))
    loop.run(stage, tmp_path / "full")
    assert stage.optimizers["main"].param_groups[0]["lr"] == pytest.approx(cfg.lr * 0.1)
    full = _lip_run(tmp_path / "full2", lr_milestones=(0.5,))
    _lip_run(tmp_path / "cut", stop_after=3, lr_milestones=(0.5,))
    resumed = _lip_run(tmp_path / "cut", lr_milestones=(0.5,))
    assert_same_run(full, resumed)
    constant = _lip_run(tmp_path / "constant")
    assert _max_diff(full.model.state_dict(), constant.model.state_dict()) > 0
    with pytest.raises(ValueError, match="fractions"):
        LipReaderTrainConfig.tiny(lr_milestones=(3,))


def test_lr_warmup_rises_linearly_then_hands_over_to_the_milestones(tmp_path):
    """lr_warmup_steps 4 of 8 steps with a milestone at 0.75: lr x 1/4, 2/4, 3/4, then 1, then 0.1; a run with a
    warm-up ends with other weights than one without; a negative warm-up is refused."""
    cfg = LipReaderTrainConfig.tiny(steps=8, lr_warmup_steps=4, lr_milestones=(0.75,))
    assert [cfg.lr_factor(s) for s in range(8)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 0.1, 0.1])
    assert LipReaderTrainConfig.tiny(steps=8).lr_factor(0) == 1
    warm = _lip_run(tmp_path / "warm", lr_warmup_steps=3)
    cold = _lip_run(tmp_path / "cold")
    assert _max_diff(warm.model.state_dict(), cold.model.state_dict()) > 0
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        LipReaderTrainConfig.tiny(lr_warmup_steps=-1)


def _moving_average(start: dict, live: list[dict], decay: float) -> dict:
    """The average after folding in ``live`` one by one, with the warm-up min(decay, (1 + n) / (10 + n))."""
    avg = {k: v.clone() for k, v in start.items()}
    for n, w in enumerate(live):
        d = min(decay, (1 + n) / (10 + n))
        avg = {k: d * avg[k] + (1 - d) * w[k] for k in avg}
    return avg


def test_weight_average_is_the_moving_average_of_the_steps_and_resumes_bit_exact(tmp_path):
    """ema_decay {"main": 0.3}: training itself is unchanged (the same logged training losses), the final weights are
    the moving average of the live weights after each of the 6 steps, started at the initial weights (warm-up decays
    0.1, 0.18, 0.25, then 0.3); a run killed after step 3 and resumed from its step-2 checkpoint ends bit-exact (the
    averages and their update counts travel in the checkpoint); a checkpoint written without averaging starts the
    average and its warm-up at its weights."""
    decay = 0.3
    live = [_lip_run(None, stop_after=k).model.state_dict() for k in range(7)]  # after 0, 1, ..., 6 steps
    plain = _lip_run(tmp_path / "plain")
    full = _lip_run(tmp_path / "full", ema_decay={"main": decay})
    got = full.model.state_dict()
    want = _moving_average(live[0], live[1:], decay)
    assert _max_diff(got, want) <= 1e-6
    assert _max_diff(got, live[6]) > 1e-3  # the average is not the last weights: the comparison can fail
    train_rows = lambda run: [(r["step"], r["loss"]) for r in run.history.rows if r["split"] == "train"]  # noqa: E731
    assert train_rows(full) == train_rows(plain)
    _lip_run(tmp_path / "cut", stop_after=3, ema_decay={"main": decay})
    assert_same_run(full, _lip_run(tmp_path / "cut", ema_decay={"main": decay}))
    _lip_run(tmp_path / "late", stop_after=3)  # no averages in its step-2 checkpoint
    late = _lip_run(tmp_path / "late", ema_decay={"main": decay}).model.state_dict()
    assert _max_diff(late, _moving_average(live[2], live[3:], decay)) <= 1e-6
    with pytest.raises(ValueError, match=r"ema_decay names optimizer\(s\) \['generator'\].*\['main'\]"):
        _lip_run(None, ema_decay={"generator": decay})
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        _lip_run(None, ema_decay={"main": 1.0})


class _LossTurnsNaN(LipReaderStage):
    """The lip reader whose training loss is NaN from its 4th step on (as when weights overflow)."""

    def train_step(self, ctx):
        terms = super().train_step(ctx)
        return {**terms, "loss": float("nan")} if ctx.step >= 3 else terms


def test_a_nonfinite_loss_stops_the_run_and_says_what_to_do(tmp_path):
    """NaN weights must not train on silently (a GPU run in bf16 once trained NaN for 6 minutes): the loop stops at
    the first non-finite loss, logs it, keeps the checkpoints written before, and says what to change."""
    feats, labels = _lip_data()
    stage = _LossTurnsNaN(feats, labels, LipReaderTrainConfig.tiny(), heldout=(feats[:8], labels[:8]))
    with pytest.raises(loop.NonFiniteLoss, match=r"loss is nan at step 4.*lipreader_000002.*learning rate"):
        loop.run(stage, tmp_path)
    assert [r["step"] for r in _log(tmp_path) if r["split"] == "train"] == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["lipreader_000002-model.pth"]
    assert loop.NONFINITE_LOSS_STEPS.get("bf16", 0) == 0  # only fp16's loss scaler skips such steps


@needs_espeak
def test_facevid2vid_trains_under_bf16_autocast(corpus, tmp_path):
    """mixed_precision='bf16' (the GPU default) on the CPU: every loss finite. The SSIM stand-in once gave -inf
    there (variances cancelling below bfloat16's resolution), so every GPU step of face-vid2vid was NaN. On a CPU with
    AVX512-BF16 oneDNN's bf16 Conv3d backward aborted the process here (loop._cpu_bf16_without_onednn)."""
    assert cli(["train", "facevid2vid", "--corpus", str(corpus), "--preset", "tiny", "--out", str(tmp_path),
                "--threads", "1", "--mixed-precision", "bf16"]) == 0
    rows = _log(tmp_path)
    assert len(rows) >= 5 and all(np.isfinite(float(r["loss"])) for r in rows if r["loss"])
    assert all(np.isfinite(float(r["perceptual"])) for r in rows if r["split"] == "train")
    assert torch.backends.mkldnn.enabled  # switched off for the bf16 steps only


class _RecordsOneDNN(LipReaderStage):
    """The lip reader noting, at every training step, whether oneDNN was on."""

    def train_step(self, ctx):
        self.onednn = [*getattr(self, "onednn", []), torch.backends.mkldnn.enabled]
        return super().train_step(ctx)


@pytest.mark.parametrize("precision, onednn", [("bf16", False), ("no", True)])
def test_cpu_training_steps_use_onednn_except_under_bf16(precision, onednn):
    """loop._cpu_bf16_without_onednn on every CPU, with or without AVX512-BF16 (where oneDNN's bf16 Conv3d backward
    aborted): off for bf16 steps only, and on again after the run."""
    feats, labels = _lip_data()
    stage = _RecordsOneDNN(feats, labels, LipReaderTrainConfig.tiny(steps=3, mixed_precision=precision),
                           heldout=(feats[:8], labels[:8]))
    loop.run(stage, None)
    assert stage.onednn == [onednn] * 3 and torch.backends.mkldnn.enabled


def _n_apart(a: dict, b: dict, tol: float) -> int:
    return sum(int(((a[k].double() - b[k].double()).abs() > tol).sum()) for k in a)


def test_gradient_accumulation_splits_a_step(tmp_path):
    """grad_accum 2 (two micro-batches of 8, one optimizer step) = one batch of 16; 3 does not divide 16.

    Up to rounding: Adam's first update is ~lr * sign(grad), so the few weights whose gradient is at rounding level
    may move differently (here one by ~1e-5 of lr 3e-3); a wrong split moves thousands of weights apart by ~lr."""
    one = _lip_run(None, steps=2).model.state_dict()
    acc = _lip_run(None, steps=2, grad_accum=2).model.state_dict()
    assert _max_diff(one, acc) <= 5e-5 and _n_apart(one, acc, 1e-6) <= 5
    other = _lip_run(None, steps=2, seed=1).model.state_dict()
    assert _n_apart(one, other, 1e-4) > 1000
    with pytest.raises(ValueError, match="split evenly"):
        _lip_run(None, steps=1, grad_accum=3)


def test_syncnet_stage_resumes_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 255, (12, 224, 224, 3), dtype=np.uint8),
              (0.3 * rng.standard_normal(12 * 640)).astype(np.float32)) for _ in range(2)]
    cfg = SyncTrainConfig(steps=3, batch_size=2, min_negative_shift=3, checkpoint_every=1, keep_checkpoints=1,
                          bn_recalibration_batches=1, num_threads=1, progress=False)
    full = train_syncnet(pairs, cfg, out_dir=tmp_path / "full")
    cut = train_syncnet(pairs, cfg, out_dir=tmp_path / "cut", stop_after=2)
    assert len(cut.losses) == 2
    resumed = train_syncnet(pairs, cfg, out_dir=tmp_path / "cut")
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert full.losses == resumed.losses and len(full.losses) == 3
    assert (tmp_path / "full" / "syncnet_trained_here.pt").is_file()
