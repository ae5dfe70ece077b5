"""PoseVAE training: the losses of supp. Eq. 11-13, the loop (learns, resumes exactly, saves the official layout
in raw pose units), the audio features, the Table 4 ablation switches, and the held-out report: on speech-locked
synthetic windows the trained model beats a still head, uses z, and heldout.json is written. Synthetic, seconds."""
from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch

from conftest import assert_same_run
from sadtalker_lib.audio2coeff import predict_pose
from sadtalker_lib.official.io import load_official, read_checkpoint, save_official_pth
from sadtalker_lib.models.expnet import ExpNet
from sadtalker_lib.models.posevae import PoseVAE, PoseVAEConfig
from sadtalker_lib.data.windows import PoseWindows, split_by_clip, synthetic_pose_windows
from sadtalker_lib.train import loop, losses
from sadtalker_lib.train.heldout import read_heldout
from sadtalker_lib.train.posevae import (
    POSEVAE_ABLATIONS,
    PoseVAETrainConfig,
    audio_embeddings,
    evaluate_posevae,
    fold_pose_scale,
    free_bits_kl,
    load_audio_encoder,
    PoseVAEStage,
    posevae_forward,
    residual_rms,
    train_posevae,
)
from sadtalker_lib.train.posevae_eval import evaluate_posevae_clips, linear_ref_pose_motion, random_training_motion

FAST = dict(progress=False, num_threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def windows():
    return split_by_clip(synthetic_pose_windows(40, with_mel=False, seed=0), heldout_fraction=0.25, seed=0)


def test_pose_losses():
    a, b = torch.randn(2, 32, 6), torch.randn(2, 32, 6)
    assert torch.allclose(losses.mse_loss(a, b), ((a - b) ** 2).mean())  # Eq. 11
    zero = torch.zeros(3, 64)
    assert float(losses.kl_loss(zero, zero)) == 0.0  # q = N(0, I)
    assert float(losses.kl_loss(torch.ones(3, 64), zero)) == pytest.approx(0.5)
    ones = torch.ones(2, 8)
    assert float(losses.gan_generator_loss(ones)) == 0.0  # Eq. 12: D fooled
    assert float(losses.gan_discriminator_loss(ones, torch.zeros(2, 8))) == 0.0  # D perfect
    total = losses.pose_total(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), lambda_mse=1, lambda_kl=1,
                              lambda_gan=0.7)
    assert float(total) == pytest.approx(1 + 2 + 2.1)  # Eq. 13


def test_resume_equals_uninterrupted(windows, tmp_path):
    train, held = windows
    cfg = PoseVAETrainConfig.cpu(steps=6, eval_every=3, checkpoint_every=2, batch_size=4, **FAST)
    full = train_posevae(train, held, cfg, tmp_path / "full")
    cut = train_posevae(train, held, cfg, tmp_path / "cut", stop_after=5)
    assert cut.checkpoint is None and cut.step == 5
    torch.rand(11)  # disturb the global RNG: the resumed run must not depend on it
    resumed = train_posevae(train, held, cfg, tmp_path / "cut")
    assert_same_run(full, resumed)
    ckpt = read_checkpoint(loop.latest_checkpoint(tmp_path / "cut", "auido2pose"))
    assert {"model", "epoch", "optimizer", "optimizer_discriminator", "rng", "extra"} <= set(ckpt)


def test_fold_pose_scale_is_exact():
    torch.manual_seed(0)
    m = PoseVAE(PoseVAEConfig(logvar_from_means_layer=False)).eval()
    raw = fold_pose_scale(copy.deepcopy(m), 0.02)
    pose, emb = 0.05 * torch.randn(3, 33, 6), torch.randn(3, 32, 512)
    style, z = torch.tensor([0, 1, 2]), torch.randn(3, 64)
    with torch.no_grad():
        a = 0.02 * m.decoder(z, pose[:, 0] / 0.02, emb, style)
        b = raw.decoder(z, pose[:, 0], emb, style)
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)
        mu_a, _ = m.encoder((pose[:, 1:] - pose[:, :1]) / 0.02, pose[:, 0] / 0.02, emb, style)
        mu_b, _ = raw.encoder(pose[:, 1:] - pose[:, :1], pose[:, 0], emb, style)
        assert torch.allclose(mu_a, mu_b, atol=1e-5)
        assert torch.allclose(m.discriminator(pose / 0.02), raw.discriminator(pose), atol=1e-5)


def test_fold_audio_standardizer_is_exact():
    from sadtalker_lib.train.posevae_audio import AudioStandardizer
    from sadtalker_lib.train.posevae_export import fold_audio_standardizer

    torch.manual_seed(0)
    m = PoseVAE(PoseVAEConfig(logvar_from_means_layer=False)).eval()
    emb = 0.02 + 0.01 * torch.rand(512) * torch.randn(3, 32, 512)  # a random encoder's scale: small, uneven
    emb[..., :50] = 0.3  # values that never vary: floored, not blown up
    std = AudioStandardizer.fit(emb)
    assert std(emb)[..., 50:].std() == pytest.approx(1.0, rel=0.1) and std(emb)[..., :50].abs().max() == 0
    assert float(std.gain.max()) <= 1.0 / (0.1 * float(emb.reshape(-1, 512).double().std(0).median())) * 1.0001
    assert torch.allclose(std.invert(std(emb)), emb, atol=1e-6)
    raw = fold_audio_standardizer(copy.deepcopy(m), std.mean, std.gain)
    pose, style, z = 0.05 * torch.randn(3, 33, 6), torch.tensor([0, 1, 2]), torch.randn(3, 64)
    with torch.no_grad():
        a = m.decoder(z, pose[:, 0], std(emb), style)
        b = raw.decoder(z, pose[:, 0], emb, style)
        assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, m.decoder(z, pose[:, 0], emb, style))
        mu_a, _ = m.encoder(pose[:, 1:] - pose[:, :1], pose[:, 0], std(emb), style)
        mu_b, _ = raw.encoder(pose[:, 1:] - pose[:, :1], pose[:, 0], emb, style)
        # float32 rounding: gains up to ~2000 here make W' e and b' large terms that cancel (~1e-4 after the MLP)
        assert torch.allclose(mu_a, mu_b, atol=5e-4), float((mu_a - mu_b).abs().max())
    with pytest.raises(ValueError, match="do not vary"):
        AudioStandardizer.fit(torch.ones(2, 32, 512))


def test_standardized_audio_run_resumes_and_exports_raw_features(tmp_path):
    """The standardizer is saved with the run (a resumed run keeps it) and folded at export: the returned model and
    the official file score the raw-feature windows alike."""
    w = synthetic_pose_windows(8, with_mel=True, seed=4)
    cfg = PoseVAETrainConfig.cpu(steps=4, eval_every=2, checkpoint_every=2, batch_size=4, audio_train_layers=1,
                                 standardize_audio=True, precise_bn_windows=8, **FAST)
    full = train_posevae(w, w, cfg, tmp_path / "full")
    train_posevae(w, w, cfg, tmp_path / "cut", stop_after=3)
    resumed = train_posevae(w, w, cfg, tmp_path / "cut")
    assert_same_run(full, resumed)
    extra = read_checkpoint(loop.latest_checkpoint(tmp_path / "cut", "auido2pose"))["extra"]
    assert len(extra["audio_standardizer"]["gain"]) == 512
    net = load_official(PoseVAE(), "audio2pose", tmp_path / "full").eval()
    a, b = evaluate_posevae(full.model, w, cfg), evaluate_posevae(net, w, cfg)
    assert a.mse == pytest.approx(b.mse, rel=1e-5)


def test_checkpoint_is_official_and_drives_audio2coeff(tmp_path):
    w = synthetic_pose_windows(6, with_mel=True, seed=2)
    cfg = PoseVAETrainConfig.cpu(steps=2, eval_every=2, checkpoint_every=0, batch_size=4, **FAST)
    run = train_posevae(w, w, cfg, tmp_path / "run")
    assert run.checkpoint.name == "auido2pose_00140-model.pth"
    net = load_official(PoseVAE(), "audio2pose", tmp_path / "run").eval()  # official config, raw units
    for a, b in zip(net.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)
    mels = torch.randn(1, 40, 1, 80, 16)
    ref = torch.zeros(1, 70)
    ref[0, 64:] = w.pose[0, 0]
    out = predict_pose(net, mels, ref, style=1, generator=torch.Generator().manual_seed(0))
    assert out.pose.shape == (1, 40, 6) and torch.isfinite(out.pose).all()
    # the returned model (raw units) and the file agree on held-out numbers
    a, b = evaluate_posevae(run.model, w, cfg), evaluate_posevae(net, w, cfg)
    assert a.mse == pytest.approx(b.mse, rel=1e-5)


def test_audio_embeddings_share_frames_and_match_per_window():
    torch.manual_seed(0)
    model = PoseVAE().eval()
    mel = torch.randn(1, 40, 1, 80, 16)
    # two overlapping windows of one clip: frames 0..32 and 4..36
    wins = PoseWindows(pose=torch.zeros(2, 33, 6), style=torch.zeros(2, dtype=torch.long),
                       mel=torch.stack([mel[0, :33], mel[0, 4:37]]), clip=torch.zeros(2, dtype=torch.long),
                       start=torch.tensor([0, 4]))
    emb = audio_embeddings(model, wins)
    with torch.no_grad():
        direct = model.encode_audio(wins.mel[:, 1:])
    assert torch.allclose(emb, direct, atol=1e-5)


def test_audio_encoder_from_expnet(tmp_path):
    torch.manual_seed(3)
    exp = ExpNet()
    save_official_pth({"audio2exp": exp}, tmp_path / "auido2exp_00300-model.pth")
    model = load_audio_encoder(PoseVAE(), tmp_path / "auido2exp_00300-model.pth")
    for a, b in zip(model.audio_encoder.state_dict().values(), exp.audio_encoder.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
        load_audio_encoder(PoseVAE(), tmp_path / "other.pth")


def test_ablation_switches(windows, tmp_path):
    train, _ = windows
    torch.manual_seed(0)
    model = PoseVAE(PoseVAEConfig(logvar_from_means_layer=False)).eval()
    pose, emb, style = train.pose[:4], train.audio_emb[:4], train.style[:4]
    full = PoseVAETrainConfig()

    def out(cfg, pose=pose, emb=emb, style=style):
        with torch.no_grad():
            return posevae_forward(model, pose, emb, style, None, cfg)[0]

    other_emb, other_style = torch.randn_like(emb), (style + 1) % 3
    other_ref = pose.clone()
    other_ref[:, 0] += 0.3  # rho_0 changes, the residual motion stays (frames 1.. move with it)
    other_ref[:, 1:] += 0.3
    assert not torch.allclose(out(full), out(full, emb=other_emb))
    assert not torch.allclose(out(full), out(full, style=other_style))
    assert not torch.allclose(out(full), out(full, pose=other_ref))
    no_audio, no_ref = full.ablation("no_audio"), full.ablation("no_ref_pose")
    assert torch.equal(out(no_audio), out(no_audio, emb=other_emb))  # "w/o audio"
    # "w/o initial pose" (the residual is recomputed from shifted poses: equal up to rounding)
    assert torch.allclose(out(no_ref), out(no_ref, pose=other_ref), atol=1e-6)
    none = full.ablation("no_conditions")  # "w/o all conditions"
    assert torch.allclose(out(none), out(none, emb=other_emb, style=other_style, pose=other_ref), atol=1e-6)

    cfg = PoseVAETrainConfig.cpu(steps=3, eval_every=3, checkpoint_every=0, batch_size=4, **FAST).ablation("no_gan")
    torch.manual_seed(cfg.seed)
    d0 = PoseVAE(PoseVAEConfig(logvar_from_means_layer=False))
    fold_pose_scale(d0, residual_rms(train) / cfg.pose_rms)  # the export folds the pose scale into D's first conv too
    run = train_posevae(train, None, cfg, tmp_path / "nogan")  # "w/o L_gan": D untouched, no D loss logged
    assert "d_loss" not in run.history.rows[-1] and run.history.rows[-1]["gan"] == 0.0
    for a, b in zip(d0.discriminator.state_dict().values(), run.model.discriminator.state_dict().values()):
        assert torch.equal(a, b)
    assert set(POSEVAE_ABLATIONS) >= {"full", "no_gan", "no_ref_pose", "no_audio", "no_conditions"}
    with pytest.raises(KeyError):
        full.ablation("nonsense")


def test_fixed_vs_mixed_style_sampling():
    torch.manual_seed(0)
    model = PoseVAE().eval()
    rng = np.random.default_rng(0)
    t = 60
    clips = [dict(mel=rng.standard_normal((t, 1, 80, 16)).astype(np.float32),
                  coeffs=np.concatenate([np.zeros((t, 64)), 0.05 * np.sin(np.arange(t)[:, None] / (3 + k)
                                                                          + np.arange(6))], 1).astype(np.float32),
                  audio=(0.3 * rng.standard_normal(t * 640) * (np.arange(t * 640) % 8000 < 2000)).astype(np.float32),
                  style_id=k) for k in range(4)]
    fixed = evaluate_posevae_clips(model, clips, style="fixed", fixed_style=2)
    mixed = evaluate_posevae_clips(model, clips, style="mixed", seed=1)
    assert {r["style_id"] for r in fixed.per_clip} == {2}
    assert len({r["style_id"] for r in mixed.per_clip}) > 1
    assert fixed.diversity > 0 and np.isfinite(fixed.real_diversity)
    assert fixed.beats_per_s > 0 and 0 <= fixed.beat_align_chance <= 1 and np.isfinite(fixed.real_beat_align_chance)
    assert fixed.beat_align_above_chance == pytest.approx(fixed.beat_align - fixed.beat_align_chance)
    with pytest.raises(ValueError):
        evaluate_posevae_clips(model, clips, style="random")
    # the "same model, another clip's audio" control: each clip is driven by the next clip's mel windows
    own = evaluate_posevae_clips(model, clips, style="own", draws=2)
    shuffled = evaluate_posevae_clips(model, clips, style="own", draws=2, audio="shuffled")
    assert [r["real_beat_align"] for r in own.per_clip] == [r["real_beat_align"] for r in shuffled.per_clip]
    assert [r["diversity"] for r in own.per_clip] != [r["diversity"] for r in shuffled.per_clip]
    with pytest.raises(ValueError):
        evaluate_posevae_clips(model, clips, audio="silent")
    with pytest.raises(ValueError):
        evaluate_posevae_clips(model, clips, draws=0)


def test_bad_inputs(windows, tmp_path):
    train, _ = windows
    with pytest.raises(ValueError, match="frames"):
        train_posevae(train, None, PoseVAETrainConfig.cpu(window=16, **FAST), tmp_path / "a")
    bad = PoseWindows(pose=train.pose, style=train.style + 100, audio_emb=train.audio_emb)
    with pytest.raises(ValueError, match="style"):
        train_posevae(bad, None, PoseVAETrainConfig.cpu(**FAST), tmp_path / "b")


# --- held-out: beats a still head, uses z, writes heldout.json ----------------------------------------------------
def locked_pose_windows(n: int, seed: int, window: int = 32, num_styles: int = 3) -> PoseWindows:
    """Head motion partly locked to speech: a pitch nod after each loud frame (visible in the audio embeddings:
    predictable from audio) plus a per-style sway with a random phase (not predictable: what z must carry)."""
    g = torch.Generator().manual_seed(seed)
    style = torch.arange(n) % num_styles
    t = torch.arange(window + 1, dtype=torch.float32)
    loud = (torch.rand(n, window + 1, generator=g) > 0.85).float()
    kernel = torch.tensor([0.0, 0.5, 1.0, 0.7, 0.3])  # nod shape after an onset
    nod = torch.nn.functional.conv1d(torch.nn.functional.pad(loud[:, None], (4, 0)), kernel.flip(0)[None, None])[:, 0]
    amp = (0.02 + 0.02 * style.float())[:, None]
    sway = amp * torch.sin(0.25 * t + 6.28 * torch.rand(n, 1, generator=g))
    pose = 0.2 * torch.randn(n, 1, 6, generator=g).repeat(1, window + 1, 1)
    pose[..., 0] += 0.08 * nod
    pose[..., 1] += sway
    pattern = torch.randn(512, generator=torch.Generator().manual_seed(99))
    emb = 0.3 * torch.randn(n, window, 512, generator=g) + loud[:, 1:, None] * pattern
    return PoseWindows(pose=pose, style=style, audio_emb=emb, clip=torch.arange(n))


@pytest.fixture(scope="module")
def locked_run(tmp_path_factory):
    train, held = locked_pose_windows(96, seed=0), locked_pose_windows(32, seed=1)
    # lr 1e-3: without L_GAN, the CPU preset's 3e-3 shuts z off on these windows (z_spread ~1e-7)
    cfg = PoseVAETrainConfig.cpu(steps=60, eval_every=60, checkpoint_every=0, batch_size=16, precise_bn_windows=64,
                                 use_gan=False, lr=1e-3, **FAST)
    out = tmp_path_factory.mktemp("locked")
    return train_posevae(train, held, cfg, out), out


def test_heldout_beats_still_head_and_uses_z(locked_run):
    run, out = locked_run
    with open(out / "log.csv") as f:
        assert {"loss", "mse", "kl", "prior_mse"} <= set(next(csv.DictReader(f)))
    report = read_heldout(out)  # written by the loop from PoseVAEStage.heldout_report
    mse = report.metrics["pose_mse"]
    assert set(mse.baselines) == {"still_head", "random_training_sequence", "linear_in_rho0"}
    assert mse.value < 0.9 * mse.baselines["still_head"], report.table()
    assert mse.baselines["still_head"] < mse.baselines["random_training_sequence"]
    sampled = report.metrics["pose_mse_sampled"]
    assert sampled.value < sampled.baselines["random_training_sequence"], report.table()
    # z is used: the posterior did not collapse, and samples with different z differ (a collapsed posterior, the
    # plain Eq. 13 at this size, gives a KL of ~1e-4 nats and a spread of ~0.002)
    assert report.metrics["kl_per_dim_nats"].value > 0.01, report.table()
    assert report.metrics["z_spread"].value > 0.005, report.table()
    assert report.metrics["diversity_ratio"].value > 0.0, report.table()


def test_random_training_motion_takes_another_clip():
    w = locked_pose_windows(12, seed=3)
    w.clip = torch.arange(12) // 3
    res = random_training_motion(w, w, seed=0)
    own = w.pose[:, 1:] - w.pose[:, :1]
    for i in range(12):
        j = [k for k in range(12) if torch.equal(res[i], own[k])]
        assert j and all(int(w.clip[k]) != int(w.clip[i]) for k in j)


def test_linear_in_rho0_baseline_recovers_an_affine_return_and_nothing_more():
    def affine_windows(n, seed, wobble=0.0):
        g = torch.Generator().manual_seed(seed)
        ref = 0.2 * torch.randn(n, 6, generator=g)
        rest = torch.tensor([0.05, -0.1, 0.0, 0.02, 0.0, -0.03])
        frac = 1 - torch.exp(-torch.arange(33, dtype=torch.float32) / 8)  # [33], 0 at rho_0
        pose = ref[:, None] + frac[None, :, None] * (rest - 0.5 * ref)[:, None]  # returns half-way to a rest pose
        pose[:, 1:] += wobble * torch.randn(n, 32, 6, generator=g)
        return PoseWindows(pose=pose, style=torch.zeros(n, dtype=torch.long), audio_emb=torch.zeros(n, 32, 8),
                           clip=torch.arange(n))

    train, held = affine_windows(40, 0), affine_windows(12, 1)
    gt = held.pose[:, 1:] - held.pose[:, :1]
    pred = linear_ref_pose_motion(held, train)
    assert pred.shape == gt.shape
    assert float((pred - gt).pow(2).mean()) < 1e-10 * float(gt.pow(2).mean())  # exact for an affine return
    # motion that rho_0 does not predict (noise about the return) stays in its error
    train, held = affine_windows(40, 0, wobble=0.05), affine_windows(12, 1, wobble=0.05)
    gt = held.pose[:, 1:] - held.pose[:, :1]
    err = float((linear_ref_pose_motion(held, train) - gt).pow(2).mean())
    assert 0.5 * 0.05**2 < err < float(gt.pow(2).mean())


def test_free_bits_kl_and_gan_warmup():
    mu, logvar = torch.zeros(4, 64), torch.zeros(4, 64)
    assert float(free_bits_kl(mu, logvar, 0.0)) == 0.0
    assert float(free_bits_kl(mu, logvar, 0.25)) == pytest.approx(0.25)  # below the floor: counted as the floor
    mu.requires_grad_(True)
    free_bits_kl(mu, logvar, 0.25).backward()
    assert float(mu.grad.abs().sum()) == 0.0  # ... and no gradient pushes it lower
    cfg = PoseVAETrainConfig(lambda_kl=0.5, kl_warmup_steps=10)
    assert [cfg.kl_weight(s) for s in (0, 5, 10, 50)] == [0.0, 0.25, 0.5, 0.5]
    cfg = PoseVAETrainConfig(lambda_gan=0.7, gan_warmup_steps=4)
    assert [cfg.gan_weight(s) for s in (0, 2, 4, 9)] == pytest.approx([0.0, 0.35, 0.7, 0.7])
    assert PoseVAETrainConfig().gan_weight(0) == 0.7  # Eq. 13 from the first step by default
    # the CPU preset ramps L_GAN over its first quarter (one training seed in four collapsed without)
    assert [PoseVAETrainConfig.cpu(steps=n).gan_warmup_steps for n in (2000, 300)] == [500, 75]
    assert PoseVAETrainConfig.cpu(gan_warmup_steps=0).gan_weight(0) == 0.7


def test_cli_writes_heldout_json_with_identity_disjoint_split(tmp_path):
    """``sadtalker-lab train posevae --corpus DIR --preset tiny --out OUT`` writes OUT/heldout.json, held out by
    person (``data.corpus.splits.identity_split``)."""
    from sadtalker_lib.cli import main
    from sadtalker_lib.data.corpus.format import make_index, save_clip, write_index

    corpus, t = tmp_path / "corpus", 40
    corpus.mkdir()
    w = locked_pose_windows(4, seed=5, window=t - 1)
    entries = []
    for k in range(4):
        coeffs = np.zeros((t, 70), np.float32)
        coeffs[:, 64:] = w.pose[k].numpy()
        arrays = dict(frames=np.zeros((t, 8, 8, 3), np.uint8), audio=np.zeros(t * 640, np.float32),
                      mel=np.random.default_rng(k).standard_normal((t, 1, 80, 16)).astype(np.float32),
                      landmarks=np.zeros((t, 68, 2), np.float32), coeffs=coeffs, exp_lip=np.zeros((t, 64), np.float32),
                      blink=np.zeros(t, np.float32), phonemes=np.zeros(0, "<U1"),
                      phoneme_ms=np.zeros((0, 2), np.float32))
        entries.append(dict(id=f"clip_{k}", file=save_clip(corpus, f"clip_{k}", arrays), n_frames=t, style_id=k % 2,
                            identity_id=k // 2))
    write_index(corpus, make_index("synthetic", 8, clips=entries))
    out = tmp_path / "out"
    assert main(["train", "posevae", "--corpus", str(corpus), "--preset", "tiny", "--out", str(out),
                 "--steps", "2"]) == 0
    report = read_heldout(out)
    assert {"pose_mse", "pose_mse_sampled", "diversity_ratio", "kl_per_dim_nats", "z_spread"} <= set(report.metrics)
    assert {"still_head", "random_training_sequence"} <= set(report.metrics["pose_mse"].baselines)
    held, train = report.split["heldout_identities"], report.split["train_identities"]
    assert len(held) == 1 and len(train) == 1 and held != train  # a whole person held out


def test_init_logvar_and_gan_on_prior(windows, tmp_path):
    """``init_logvar`` starts the posterior near-deterministic; ``gan_on_prior`` shows D the inference path
    (z ~ N(0, I)) instead of the posterior sample: a different run from the same seed, D still trained."""
    train, _ = windows
    cfg = PoseVAETrainConfig.cpu(steps=2, eval_every=2, checkpoint_every=0, batch_size=4, precise_bn_windows=0,
                                 **FAST)
    stage = PoseVAEStage(train, None, cfg.replace(init_logvar=-3.0))
    stage.build(None)
    with torch.no_grad():
        _, logvar = stage.model.encoder(train.pose[:2, 1:] - train.pose[:2, :1], train.pose[:2, 0],
                                        train.audio_emb[:2], train.style[:2])
    assert torch.allclose(logvar, torch.full_like(logvar, -3.0))
    a = train_posevae(train, None, cfg, tmp_path / "a")
    b = train_posevae(train, None, cfg.replace(gan_on_prior=True), tmp_path / "b")
    assert "d_loss" in b.history.rows[-1]
    assert not torch.equal(a.model.decoder.pose_linear.weight, b.model.decoder.pose_linear.weight)


def test_training_path_runs_where_the_model_is():
    """Windows are held on the CPU; the CVAE's training and evaluation path moves them to the model's device (on an
    H200 the stage stopped feeding CPU tensors to the CUDA model). "meta" stands in for the GPU: shapes only."""
    from sadtalker_lib.train.posevae import posevae_forward

    w = synthetic_pose_windows(n=4, with_mel=False)
    model = PoseVAE().to("meta")
    eps = torch.randn(4, model.config.latent_size)
    pred, gt, mu, logvar = posevae_forward(model, w.pose, w.audio_emb, w.style, eps, PoseVAETrainConfig())
    assert {t.device.type for t in (pred, gt, mu, logvar)} == {"meta"} and tuple(pred.shape) == tuple(gt.shape)
