"""ExpNet distillation: the losses of supp. Eq. 3-10, the loop (learns, resumes exactly, saves the official
layout), the lip-reading stand-in, and the Table 3 ablation switches. Synthetic windows, a few seconds each."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_same_run
from sadtalker_lib.audio2coeff import audio_to_coefficients, predict_expression
from sadtalker_lib.official.io import find_official_file, load_official, read_checkpoint
from sadtalker_lib.models.expnet import ExpNet
from sadtalker_lib.models.posevae import PoseVAE
from sadtalker_lib.data.windows import split_by_clip, synthetic_exp_windows
from sadtalker_lib.train import loop, losses
from sadtalker_lib.train.expnet import (
    EXPNET_ABLATIONS,
    LIPREADER_FILE,
    ExpNetTrainConfig,
    default_morphable_model,
    expnet_step_losses,
    eye_closing_direction,
    lip_subspace,
    project_expression,
    train_expnet,
    warm_start_mapping,
)
from sadtalker_lib.train.lipreader import (
    VISEME_CLASSES,
    frame_viseme_labels,
    lipreader_accuracy,
    load_lipreader,
    mouth_features,
    save_lipreader,
    train_lipreader,
    viseme_class_of,
)

FAST = dict(progress=False, num_threads=1, precise_bn_windows=16, lipreader_steps=150)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def windows():
    return split_by_clip(synthetic_exp_windows(48, seed=0), heldout_fraction=0.25, seed=0)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
def test_distill_and_read_losses():
    a, b = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    assert torch.allclose(losses.distill_loss(a, b), ((a - b) ** 2).mean())  # Eq. 3
    logits, labels = torch.randn(10, 8), torch.randint(0, 8, (10,))
    assert torch.allclose(losses.read_loss(logits, labels), F.cross_entropy(logits, labels))  # Eq. 9, hard labels
    gt_logits = torch.randn(10, 8)
    soft = -(gt_logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(losses.read_loss(logits, gt_logits), soft)  # Eq. 9, C_gt logits


def test_eye_and_landmark_losses():
    mm = default_morphable_model()
    exp = torch.zeros(1, 2, 64)
    exp[0, 1, mm.expression_index("blink_left")] = 1.0
    exp[0, 1, mm.expression_index("blink_right")] = 1.0
    lm = project_expression(mm, exp)
    r = losses.eye_ratio(lm)  # Eq. 4-6
    assert r[0, 0] > 0.3 and r[0, 1] < 0.05  # open vs closed
    z = torch.tensor([[0.0, 1.0]])
    target = losses.blink_target_ratio(z, r[:, :1])
    assert torch.allclose(target, torch.stack([r[0, 0], torch.zeros(())])[None])
    assert torch.allclose(losses.eye_loss(r, target), (r - target).abs().sum())  # Eq. 7: sum over frames
    # Eq. 8: moving only eye landmarks leaves the point term unchanged
    moved = lm.clone()
    moved[..., list(losses.EYE_LANDMARKS), :] += 5.0
    l_same, _ = losses.landmark_loss(moved, lm, r, r, lambda_eye=200.0)
    assert float(l_same) == 0.0
    moved[..., 48, :] += 2.0  # a mouth corner, in M
    l_pts, _ = losses.landmark_loss(moved, lm, r, r, lambda_eye=200.0)
    assert torch.isclose(l_pts, torch.tensor(8.0 / len(losses.NON_EYE_LANDMARKS)))  # 2 px in x and y, 1 of 56 pts
    total = losses.expnet_total(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), lambda_distill=2,
                                lambda_read=0.01, lambda_lks=0.01)
    assert torch.isclose(total, torch.tensor(2 + 0.02 + 0.03))  # Eq. 10


def test_eye_closing_direction_closes_the_eyes():
    mm = default_morphable_model()
    d = eye_closing_direction(mm)
    r0 = losses.eye_ratio(project_expression(mm, torch.zeros(1, 1, 64)))
    r1 = losses.eye_ratio(project_expression(mm, d[None, None]))
    assert float(r1) < 0.1 * float(r0)


# ---------------------------------------------------------------------------------------------
# lip reader
# ---------------------------------------------------------------------------------------------
def test_viseme_labels_from_phonemes():
    assert VISEME_CLASSES[viseme_class_of("p")] == "bilabial"
    assert VISEME_CLASSES[viseme_class_of("f")] == "labiodental"
    assert VISEME_CLASSES[viseme_class_of("a")] == "open"
    assert VISEME_CLASSES[viseme_class_of("_")] == "silence"
    labels = frame_viseme_labels([("_", 0, 40), ("m", 40, 120), ("a", 120, 200)], 5)
    assert [VISEME_CLASSES[i] for i in labels] == ["silence", "bilabial", "bilabial", "open", "open"]


def test_lipreader_learns_and_round_trips(tmp_path):
    w = synthetic_exp_windows(64, seed=1)
    mm = default_morphable_model()
    feats = mouth_features(project_expression(mm, w.exp_lip))
    reader = train_lipreader(feats, w.viseme, steps=150, seed=0)
    acc = lipreader_accuracy(reader, feats, w.viseme)
    assert acc > 0.5, f"lip reader accuracy {acc} (chance 1/8)"
    path = save_lipreader(reader, tmp_path / "reader.pth")
    again = load_lipreader(path)
    assert again.source == "trained-here"
    assert torch.equal(again(feats[:2]), reader(feats[:2]))
    torch.save({"nope": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError):
        load_lipreader(tmp_path / "bad.pth")


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def test_loss_falls(windows, tmp_path):
    train, held = windows
    cfg = ExpNetTrainConfig.cpu(steps=40, eval_every=40, checkpoint_every=0, **FAST)
    run = train_expnet(train, held, cfg, tmp_path / "run")
    _, v = run.history.series("loss", "train")
    assert v[-8:].mean() < 0.75 * v[:8].mean(), f"train loss {v[:8].mean():.3f} -> {v[-8:].mean():.3f}"
    before, after = run.history.first("loss"), run.history.last("loss")
    assert after < before, f"held-out loss {before:.4f} -> {after:.4f}"
    # the evaluation encodes the audio once for both of its passes (ExpNet.encode_audio + map_features) and the
    # held-out report reuses its predictions of the final weights: the whole forward gives the same mouths
    from sadtalker_lib.train.expnet_heldout import expnet_heldout

    assert run.heldout is not None
    assert run.history.last("mouth_error") == pytest.approx(run.heldout.mouth_landmark_error_px["trained"], rel=1e-5)
    fresh = expnet_heldout(run.model, held, default_morphable_model(), cfg.use_ref_exp, train)
    assert fresh.mouth_landmark_error_px == pytest.approx(run.heldout.mouth_landmark_error_px, rel=1e-5)
    assert fresh.mouth_opening_corr == pytest.approx(run.heldout.mouth_opening_corr, rel=1e-5)
    assert (tmp_path / "run" / LIPREADER_FILE).is_file()  # the trained-here reader, labelled
    assert load_lipreader(tmp_path / "run" / LIPREADER_FILE).source == "trained-here"
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"step", "split", "loss", "distill", "lks", "eye", "read"} <= set(rows[0])


def test_resume_equals_uninterrupted(windows, tmp_path):
    train, held = windows
    cfg = ExpNetTrainConfig.cpu(steps=6, eval_every=3, checkpoint_every=2, batch_size=4, **FAST)
    full = train_expnet(train, held, cfg, tmp_path / "full")
    part = train_expnet(train, held, cfg, tmp_path / "cut", stop_after=5)  # "killed" after step 5
    assert part.checkpoint is None and part.step == 5
    loop.set_rng_state(loop.rng_state())  # nothing carries over in-process: perturb the global RNG
    torch.rand(7)
    resumed = train_expnet(train, held, cfg, tmp_path / "cut")  # continues from the step-4 checkpoint
    assert_same_run(full, resumed)
    ckpt = read_checkpoint(loop.latest_checkpoint(tmp_path / "cut", "auido2exp"))
    assert {"model", "epoch", "optimizer", "rng", "step", "config"} <= set(ckpt)


def test_checkpoint_is_official_and_drives_audio2coeff(windows, tmp_path):
    train, _ = windows
    cfg = ExpNetTrainConfig.cpu(steps=2, eval_every=2, checkpoint_every=0, batch_size=4, **FAST)
    run = train_expnet(train, None, cfg, tmp_path / "run")
    assert run.checkpoint.name == "auido2exp_00300-model.pth"
    assert find_official_file("audio2exp", tmp_path / "run") == run.checkpoint
    net = load_official(ExpNet(), "audio2exp", tmp_path / "run").eval()
    for a, b in zip(net.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)
    t = 12
    mels = torch.randn(1, t, 1, 80, 16)
    ref = torch.zeros(1, 70)
    exp = predict_expression(net, mels, ref[:, None].expand(-1, t, -1), torch.zeros(1, t, 1))
    assert exp.shape == (1, t, 64) and torch.isfinite(exp).all()
    out = audio_to_coefficients(net, PoseVAE().eval(), mels, ref, torch.zeros(1, t, 1), generator=torch.Generator())
    assert out.coeffs.shape == (t, 70) and np.isfinite(out.coeffs).all()


# ---------------------------------------------------------------------------------------------
# switches
# ---------------------------------------------------------------------------------------------
class _Spy(ExpNet):
    def forward(self, mel, ref_exp, blink):
        self.seen_ref = ref_exp
        return super().forward(mel, ref_exp, blink)


def test_ablation_switches(windows):
    train, _ = windows
    batch = train[torch.arange(4)]
    z = torch.rand(4, 5)
    mm = default_morphable_model()
    model = _Spy()
    warm_start_mapping(model, mm)
    model.eval()

    full = ExpNetTrainConfig()
    _, terms, pred = expnet_step_losses(model, batch, z, full, mm, lipreader=None)
    assert torch.allclose(model.seen_ref[:, 0], batch.ref_exp)
    assert terms["distill"] == pytest.approx(float(F.mse_loss(pred.detach(), batch.exp_lip)))

    _, _, _ = expnet_step_losses(model, batch, z, full.ablation("no_ref"), mm, None)
    assert float(model.seen_ref.abs().max()) == 0.0  # "w/o beta_0": zeros in place of beta_0

    _, terms, pred = expnet_step_losses(model, batch, z, full.ablation("real_coeffs"), mm, None)
    assert terms["distill"] == pytest.approx(float(F.mse_loss(pred.detach(), batch.exp_real)))  # "w/ real coeffs."
    assert not torch.equal(batch.exp_real, batch.exp_lip)

    feats = mouth_features(project_expression(mm, train.exp_lip))
    reader = train_lipreader(feats, train.viseme, steps=20)
    _, with_read, _ = expnet_step_losses(model, batch, z, full, mm, reader)
    _, no_read, _ = expnet_step_losses(model, batch, z, full.ablation("no_read"), mm, reader)
    assert "read" in with_read and "read" not in no_read  # "w/o L_read"
    assert with_read["loss"] == pytest.approx(no_read["loss"] + 0.01 * with_read["read"], rel=1e-5)

    cfg = full.ablation("no_ref_no_read")
    assert not cfg.use_ref_exp and not cfg.use_read_loss
    assert set(EXPNET_ABLATIONS) >= {"full", "no_ref_no_read", "no_read", "real_coeffs"}
    with pytest.raises(KeyError):
        full.ablation("nonsense")
    with pytest.raises(ValueError):
        ExpNetTrainConfig(target="teacher")
    with pytest.raises(TypeError):
        full.replace(not_a_field=1)


def test_warm_start_is_reference_plus_blink():
    mm = default_morphable_model()
    model = warm_start_mapping(ExpNet(), mm).eval()
    ref = torch.randn(2, 3, 64)
    z = torch.rand(2, 3, 1)
    out = model(torch.randn(2, 3, 1, 80, 16), ref, z)
    assert torch.allclose(out, ref + z * eye_closing_direction(mm), atol=1e-5)


def test_lip_subspace_warm_start_replaces_the_first_frames_mouth(windows):
    train, _ = windows  # the toy target moves on dims 0, 4, 7 within a clip
    u, mean = lip_subspace(train)
    assert u.shape == (64, 3)
    proj = u @ u.T
    assert torch.allclose(proj[[0, 4, 7]][:, [0, 4, 7]], torch.eye(3), atol=1e-4)
    model = warm_start_mapping(ExpNet(), default_morphable_model(), train).eval()
    ref = train.exp_lip[:4, :1].expand(-1, 5, -1)  # a beta_0 caught mid-word
    out = model(train.mel[:4], ref, torch.zeros(4, 5, 1))
    expected = ref - ref @ proj + proj @ mean  # beta_0 elsewhere, the average mouth on the lip dims
    assert torch.allclose(out, expected, atol=1e-4)
    assert ExpNetTrainConfig().warm_start == "lip_subspace" and ExpNetTrainConfig(warm_start=False).warm_start == "none"
    with pytest.raises(ValueError, match="warm_start"):
        ExpNetTrainConfig(warm_start="zeros")


def test_no_read_run_trains_no_reader(windows, tmp_path):
    train, _ = windows
    cfg = ExpNetTrainConfig.cpu(steps=1, eval_every=1, checkpoint_every=0, batch_size=4, **FAST).ablation("no_read")
    run = train_expnet(train, None, cfg, tmp_path / "run")
    assert run.lipreader is None and not (tmp_path / "run" / LIPREADER_FILE).exists()


def test_bad_window_length(windows, tmp_path):
    train, _ = windows
    with pytest.raises(ValueError, match="window"):
        train_expnet(train, None, ExpNetTrainConfig.cpu(window=7, **FAST), tmp_path / "run")


def test_csv_logger_resume_drops_later_rows(tmp_path):
    log = loop.CSVLogger(tmp_path)
    for s in range(1, 5):
        log.log(s, "train", {"loss": s})
    log.log(4, "heldout", {"loss": 0.5, "extra": 1.0})  # a new column rewrites the header
    again = loop.CSVLogger(tmp_path, resume_step=2)
    assert [r["step"] for r in again.history.rows] == [1, 2]
    with open(tmp_path / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


# ---------------------------------------------------------------------------------------------
# held-out report on a corpus folder (identity-disjoint split, heldout.json, margin over beta_0 alone)
# ---------------------------------------------------------------------------------------------
def _toy_corpus(root, n_people: int = 4, clips_per_person: int = 2, frames: int = 40, seed: int = 0):
    """A corpus folder in the real format, no speech synthesis: each frame "says" one of 6 sounds (a fixed mel
    pattern + noise, held 2-4 frames); the lip-only target is the person's resting face plus the sound's mouth on
    the DefaultMorphableModel's lip directions; the real coefficients add brow motion. Frame 0 is mid-word, so
    beta_0 carries a mouth that the target does not keep (as in the default corpus)."""
    from sadtalker_lib.data.corpus import format as fmt
    from sadtalker_lib.data.visemes import EXPRESSION_DIMS

    g = np.random.default_rng(seed)
    patterns = g.normal(size=(6, 1, 80, 16)).astype(np.float32)
    lips = [EXPRESSION_DIMS[k] for k in ("jaw_open", "lip_stretch", "pucker", "lower_lip_depress")]
    mouth = g.uniform(-0.8, 1.2, size=(6, len(lips))).astype(np.float32)
    mouth[0] = 0.0  # sound 0: silence, closed lips
    entries = []
    for k in range(n_people * clips_per_person):
        person = k // clips_per_person
        labels = np.repeat(g.integers(0, 6, frames), g.integers(2, 5, frames))[:frames]
        rest = np.zeros(64, np.float32)
        rest[EXPRESSION_DIMS["brows_raise"]] = 0.3 * person
        rest[EXPRESSION_DIMS["lip_corners_up"]] = 0.2 * (person % 2)
        exp_lip = np.tile(rest, (frames, 1))
        exp_lip[:, lips] += mouth[labels]
        coeffs = np.zeros((frames, 70), np.float32)
        coeffs[:, :64] = exp_lip
        coeffs[:, EXPRESSION_DIMS["brows_raise"]] += 0.3 * np.sin(np.arange(frames) / 3 + k)
        mel = (patterns[labels] + 0.3 * g.normal(size=(frames, 1, 80, 16))).astype(np.float32)
        name = fmt.save_clip(root, f"clip_{k:04d}", dict(
            frames=np.zeros((frames, 8, 8, 3), np.uint8), audio=np.zeros(frames * 640, np.float32), mel=mel,
            landmarks=np.zeros((frames, 68, 2), np.float32), coeffs=coeffs, exp_lip=exp_lip,
            blink=np.zeros(frames, np.float32), phonemes=np.array([], "<U8"), phoneme_ms=np.zeros((0, 2), np.float32)))
        entries.append(dict(id=f"clip_{k:04d}", file=name, n_frames=frames, style_id=0, identity_id=person))
    fmt.write_index(root, fmt.make_index("toy", 8, clips=entries))
    return root


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-corpus")
    _toy_corpus(root)
    out = root.parent / "toy-run"  # what `sadtalker-lab train expnet --corpus root --preset tiny --out out` runs,
    # with the CPU preset's 128 windows for the BatchNorm statistics: the tiny preset's 8 made the held-out error of
    # the eval-mode network swing between 1.9 and 4.1 px from one evaluation to the next (seed 0 ended at 0.84x
    # beta_0-only on an AVX-512 Xeon, 0.14-0.45x for seeds 1-4); with 128: 0.13-0.17x for seeds 0, 1, 2, 5
    stage = loop.build_cli_stage("expnet", root, "tiny", steps=60, batch_size=8, eval_every=60, checkpoint_every=0,
                                 num_threads=1, precise_bn_windows=128)
    loop.run(stage, out)
    return root, out


def test_cli_writes_heldout_json_with_identity_disjoint_split(cli_run):
    from sadtalker_lib.data.corpus import load_index
    from sadtalker_lib.train.heldout import HELDOUT_FILE, read_heldout

    root, out = cli_run
    data = json.loads((out / HELDOUT_FILE).read_text())
    assert data["stage"] == "expnet"
    err = data["metrics"]["mouth_landmark_error_px"]
    assert set(err) >= {"value", "baselines", "lower_is_better"} and err["lower_is_better"] is True
    assert {"beta0_only", "mean_mouth"} <= set(err["baselines"])
    corr = data["metrics"]["mouth_opening_corr"]
    assert corr["lower_is_better"] is False and corr["baselines"]["beta0_only"] == 0.0
    assert data["metrics"]["mouth_energy_corr"]["baselines"].keys() >= {"teacher_lip_only", "beta0_only"}
    people = {c["id"]: c["identity_id"] for c in load_index(root)["clips"]}
    split = data["split"]
    assert split["identity_disjoint"] == [True] and split["heldout"]
    assert not {people[c] for c in split["train"]} & {people[c] for c in split["heldout"]}
    assert read_heldout(out).metrics["mouth_landmark_error_px"].value == err["value"]


def test_heldout_margin_over_beta0_only(cli_run):
    """60 steps on 6 training clips: the mouth of held-out people beats beta_0 alone by a clear margin and
    follows the teacher (the per-clip correlation of the mouth opening), which no audio-free answer does."""
    from sadtalker_lib.train.heldout import read_heldout

    rep = read_heldout(cli_run[1])
    err, corr = rep.metrics["mouth_landmark_error_px"], rep.metrics["mouth_opening_corr"]
    assert err.ratio("beta0_only") < 0.6, rep.table()
    assert err.beats("mean_mouth"), rep.table()  # the audio adds to the warm start's average mouth
    assert corr.value > 0.6 and corr.baselines["mean_mouth"] == 0.0, rep.table()


def test_evaluation_runs_where_the_model_is():
    """Windows are held on the CPU; evaluation moves them to the model's device (on an H200 the stage stopped
    feeding CPU windows to the CUDA model). "meta" stands in for the GPU here: shapes only, and a CPU input to a
    meta model raises, as a CPU input to a CUDA model does."""
    from sadtalker_lib.train.expnet_heldout import predict_windows

    w = synthetic_exp_windows(n=6)
    model = ExpNet().to("meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        model.eval()(w.mel, w.ref_exp[:, None].expand(-1, w.window, -1), torch.zeros(6, w.window, 1))
    out = predict_windows(model, w)
    assert out.device.type == "meta" and tuple(out.shape) == (6, w.window, 64)
    assert w.to("cpu") is w and w.to("meta").mel.device.type == "meta"
