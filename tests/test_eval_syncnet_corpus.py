"""The trained-here SyncNet on the project's default corpus (train.syncnet.train_syncnet_on_corpus):
crops + MFCC + mouth targets from corpus clips, the loss falls, the file lands where eval.lse looks for it, and
the held-out before / after report has the protocol's numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import espeak_available, needs_espeak
from sadtalker_lib.metrics.lse import SAMPLES_PER_FRAME, VSHIFT, load_syncnet
from sadtalker_lib.metrics.syncnet import SyncNet
from sadtalker_lib.train.syncnet import (CORPUS_TRAIN_DEFAULTS, SyncPair, SyncTrainConfig, corpus_sync_pairs,
                                multi_negative_loss, multiway_loss, recalibrate_batchnorm, sync_report,
                                train_syncnet_on_corpus)

# a few dozen cheap steps: 4 lip windows x (1 aligned + 3 shifted audio windows)
FAST = dict(CORPUS_TRAIN_DEFAULTS, batch_size=4, audio_negatives=3, bn_recalibration_batches=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not espeak_available():
        pytest.skip("eSpeak NG not installed")
    from sadtalker_lib.data.corpus import build_default_corpus

    root = tmp_path_factory.mktemp("sync_corpus")
    build_default_corpus(root, n_clips=3, seed=0, size=96, max_seconds=1.2, sentences_per_clip=1, progress=False)
    return root


def test_losses_prefer_the_aligned_audio():
    lip = torch.zeros(2, 4)
    near, far = torch.full((2, 1, 4), 0.1), torch.full((2, 2, 4), 3.0)
    good = torch.cat([near, far], 1)  # aligned closest
    bad = torch.cat([far[:, :1], near, far[:, 1:]], 1)  # a shifted window closest
    mask = torch.ones(2, 3)
    assert multiway_loss(lip, good, mask) < multiway_loss(lip, bad, mask)
    assert multi_negative_loss(lip, good, mask, margin=5.0) < multi_negative_loss(lip, bad, mask, margin=5.0)
    # hand value: d_pos = 0.2, d_neg = 6 -> 0.5 (0.04 + (5 - 6)_+^2) = 0.02
    assert multi_negative_loss(lip, good, mask, margin=5.0).item() == pytest.approx(0.02, abs=1e-5)
    # masked negatives do not count: with only the aligned window left, multi-way loss is 0
    only = torch.tensor([[1.0, 0.0, 0.0]] * 2)
    assert multiway_loss(lip, bad, only).item() == pytest.approx(0.0, abs=1e-6)


def test_batchnorm_recalibration_averages_the_batches():
    torch.manual_seed(0)
    net = SyncNet()
    lips = [torch.rand(2, 3, 5, 224, 224) * 255 for _ in range(2)]
    auds = [torch.randn(3, 1, 13, 20) + 4.0 for _ in range(2)]
    recalibrate_batchnorm(net, list(zip(lips, auds)))
    assert not net.training
    bn = net.audio_encoder[1]  # the BatchNorm after the first audio conv
    conv = net.audio_encoder[0]
    with torch.no_grad():
        means = torch.stack([conv(a).mean((0, 2, 3)) for a in auds]).mean(0)
    torch.testing.assert_close(bn.running_mean, means, atol=1e-4, rtol=1e-4)
    assert bn.momentum == 0.1  # restored


@needs_espeak
def test_corpus_pairs_carry_crops_mfcc_and_mouth(corpus):
    pairs, ids = corpus_sync_pairs(corpus, clips=[0], boxes="landmarks")
    (p,) = pairs
    assert ids == ["clip_0000"] and p.name == "clip_0000"
    assert p.crops.shape[1:] == (224, 224, 3) and p.crops.dtype == np.uint8
    assert p.mfcc.shape[0] == 13 and p.mfcc.shape[1] >= 4 * (p.num_windows + 4)
    assert p.num_windows == len(p.crops) - 5 == 30 - 5
    assert p.mouth is not None and p.mouth.shape == (30, 9) and p.mouth.std(0).max() > 0
    with pytest.raises(ValueError, match="boxes"):
        corpus_sync_pairs(corpus, boxes="s3fd")


@needs_espeak
def test_train_on_corpus_loss_falls_and_saves_where_lse_looks(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SADTALKER_LAB_CACHE", str(tmp_path / "cache"))
    path, hist = train_syncnet_on_corpus(corpus, steps=30, seed=0, progress=False,
                                         config=SyncTrainConfig(**FAST))
    assert path == tmp_path / "cache" / "syncnet" / "syncnet_trained_here.pt" and path.is_file()
    model, label = load_syncnet()  # the default location
    assert label == "trained-here" and not model.training
    loss = np.asarray(hist["loss"])
    assert len(loss) == 30 and np.isfinite(loss).all()
    print("loss first 5 / last 5:", loss[:5].mean(), loss[-5:].mean())
    assert loss[-5:].mean() < 0.8 * loss[:5].mean()
    assert hist["train_clips"] == ["clip_0000", "clip_0001"] and hist["heldout_clips"] == ["clip_0002"]
    for stage in ("before", "after"):
        r = hist[stage]
        assert {"lse_d_in", "lse_d_off", "lse_c_in", "lse_c_off", "offset_in", "offset_off",
                "pair_accuracy"} <= set(r)
        assert all(np.isfinite(r[k]) for k in ("lse_d_in", "lse_d_off", "pair_accuracy"))
        assert abs(r["offset_in"]) <= VSHIFT and 0 <= r["pair_accuracy"] <= 1
    print({k: (round(hist["before"][k], 3), round(hist["after"][k], 3))
           for k in ("lse_d_in", "lse_d_off", "offset_in", "offset_off", "pair_accuracy")})


@needs_espeak
def test_train_on_corpus_explicit_path_and_bad_heldout(corpus, tmp_path):
    out = tmp_path / "sn" / "mine.pt"
    path, hist = train_syncnet_on_corpus(corpus, out, steps=2, progress=False, heldout=0,
                                         config=SyncTrainConfig(**FAST))
    assert path == out and out.is_file() and hist["before"] is None and len(hist["train_clips"]) == 3
    with pytest.raises(ValueError, match="heldout"):
        train_syncnet_on_corpus(corpus, out, steps=1, progress=False, heldout=3)


def test_sync_report_finds_a_known_shift():
    """Embeddings made by hand through a stand-in net: lips and audio encode the same per-frame signal."""
    rng = np.random.default_rng(0)
    n = 40
    signal = rng.standard_normal((n + 5, 8)).astype(np.float32)

    class Echo(torch.nn.Module):  # lips: frame index in pixel (0, 0); audio: MFCC column 0 holds the index
        def forward_lips(self, x):
            return torch.from_numpy(signal[x[:, 0, 0, 0, 0].long().numpy()])

        def forward_audio(self, a):
            return torch.from_numpy(signal[a[:, 0, 0, 0].long().numpy()])

    crops = np.zeros((n + 5, 4, 4, 3), np.uint8)
    crops[:, 0, 0, :] = np.arange(n + 5)[:, None]  # BGR flip keeps all channels equal
    mfcc = np.zeros((13, 4 * (n + 5)), np.float64)
    mfcc[0] = np.repeat(np.arange(n + 5), 4)
    pair = SyncPair(crops=crops, mfcc=mfcc, num_windows=n)
    r = sync_report(Echo(), [pair], shift=8)
    assert r["offset_in"] == 0 and r["lse_d_in"] < 1e-3 and r["pair_accuracy"] == 1.0
    assert r["offset_off"] == -8 and r["lse_d_off"] > r["lse_d_in"]
    assert len(r["per_clip"]) == 1 and SAMPLES_PER_FRAME == 640
