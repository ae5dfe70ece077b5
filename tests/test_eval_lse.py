"""LSE-D / LSE-C (eval.lse): the syncnet_python protocol on cases with a known answer, weights, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _eval_synthetic import SR, face_clip, faceless_clip
from sadtalker_lib.metrics.faces import NoFaceError
from sadtalker_lib.metrics.lse import (VSHIFT, SyncNetScorer, face_crops, lse, lse_from_embeddings, load_syncnet,
                                       sync_embeddings, syncnet_mfcc)
from sadtalker_lib.metrics.mfcc import mfcc
from sadtalker_lib.metrics.syncnet import OFFICIAL_KEY_PREFIXES, SyncNet
from sadtalker_lib.train.syncnet import SyncTrainConfig, make_pairs, save_trained_syncnet, train_syncnet
from sadtalker_lib.metrics.video_io import Clip, NoAudioTrackError
from sadtalker_lib.metrics.weights import WeightsMissingError


# ---------------------------------------------------------------------------------------------
# MFCC
# ---------------------------------------------------------------------------------------------
def test_mfcc_layout_and_energy_coefficient():
    rng = np.random.default_rng(0)
    x = rng.integers(-3000, 3000, 16000).astype(np.int16)
    m = mfcc(x)
    assert m.shape == (1 + int(np.ceil((16000 - 400) / 160)), 13)  # 25 ms frames every 10 ms
    # coefficient 0 is the log energy of the pre-emphasised, zero-padded 512-point power spectrum
    y = np.append(float(x[0]), x[1:].astype(float) - 0.97 * x[:-1].astype(float))
    frame = y[160 * 7: 160 * 7 + 400]
    energy = np.sum(np.abs(np.fft.rfft(frame, 512)) ** 2) / 512
    assert m[7, 0] == pytest.approx(np.log(energy), rel=1e-12)


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(24000) * 2000 * np.sin(np.arange(24000) / 900.0)).astype(np.int16)
    diff = np.abs(psf.mfcc(x, 16000) - mfcc(x)).max()
    print("max |mfcc - python_speech_features.mfcc|:", diff)
    assert diff < 1e-9


# ---------------------------------------------------------------------------------------------
# distance / confidence / offset
# ---------------------------------------------------------------------------------------------
def _hand_lse(lip: np.ndarray, aud: np.ndarray, vshift: int):
    """calc_pdist + min / median by hand: audio rows outside the clip are zero vectors; pairwise eps 1e-6."""
    n = len(lip)
    mean = np.zeros(2 * vshift + 1)
    for k in range(2 * vshift + 1):
        for i in range(n):
            j = i + k - vshift
            other = aud[j] if 0 <= j < n else np.zeros(aud.shape[1])
            mean[k] += np.linalg.norm(lip[i] - other + 1e-6) / n
    return mean.min(), np.median(mean) - mean.min(), vshift - int(np.argmin(mean))


@pytest.mark.parametrize("lag", [0, 3, -5])
def test_lse_known_offset_matches_hand_computation(lag):
    rng = np.random.default_rng(lag + 10)
    n, d = 40, 16
    aud = rng.normal(size=(n, d)).astype(np.float32)
    lip = rng.normal(size=(n, d)).astype(np.float32)
    for i in range(n):  # video window i shows what audio window i - lag says: the video lags by `lag` frames
        if 0 <= i - lag < n:
            lip[i] = aud[i - lag]
    r = lse_from_embeddings(lip, aud)
    dist, conf, offset = _hand_lse(lip.astype(np.float64), aud.astype(np.float64), VSHIFT)
    assert r.offset == offset == lag
    assert r.distance == pytest.approx(dist, abs=1e-4) and r.confidence == pytest.approx(conf, abs=1e-4)
    assert r.mean_dists.shape == (2 * VSHIFT + 1,) and r.confidence > 1.0


class _ColourNet(nn.Module):
    """Identity-like 'SyncNet': lips -> mean BGR of the window's first frame; audio -> MFCC rows 0..2 of its
    first column. With frames of colour c[t] and MFCC column 4u holding c[u + lag] (BGR), lip window v matches
    audio window v - lag, so the best offset is +lag (the first `lag` windows have no match)."""

    def forward_lips(self, x):  # [B, 3, 5, H, W]
        return x[:, :, 0].mean(dim=(2, 3))

    def forward_audio(self, x):  # [B, 1, 13, 20]
        return x[:, 0, 0:3, 0]


def test_protocol_windows_and_bgr_with_identity_extractors():
    rng = np.random.default_rng(3)
    t, lag = 60, 4
    colours = rng.integers(0, 256, size=(t + 40, 3)).astype(np.float64)  # RGB
    crops = np.broadcast_to(colours[:t, None, None, :].astype(np.uint8), (t, 8, 8, 3)).copy()
    feats = np.zeros((13, 4 * t + 16))
    for u in range(t):
        feats[0:3, 4 * u] = colours[u + lag, ::-1]  # BGR, as the lip tower sees the frames
    lips, auds = sync_embeddings(_ColourNet(), crops, feats, audio_frames=t)
    assert lips.shape == auds.shape == (t - 5, 3)
    r = lse_from_embeddings(lips, auds)
    dist, conf, offset = _hand_lse(lips.double().numpy(), auds.double().numpy(), VSHIFT)
    assert r.offset == offset == lag and r.num_windows == t - 5  # the video lags the audio by `lag` frames
    assert r.distance == pytest.approx(dist, rel=1e-5) and r.confidence == pytest.approx(conf, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# on a clip (face crops, audio) and bad input
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_scorer():
    torch.manual_seed(0)
    return SyncNetScorer(SyncNet(), "random")


@pytest.fixture(scope="module")
def clip():
    return face_clip(16)


def test_lse_on_a_face_clip(clip, random_scorer):
    from sadtalker_lib.metrics.faces import track_faces

    track = track_faces(clip.frames)
    assert track.found.all()
    crops = face_crops(clip.frames, track)
    assert crops.shape == (16, 224, 224, 3)
    r = lse(clip, random_scorer, track=track)
    assert r.num_windows == 16 - 5 and np.isfinite([r.distance, r.confidence]).all() and r.label == "random"
    assert -VSHIFT <= r.offset <= VSHIFT


def test_lse_bad_input(clip, random_scorer):
    with pytest.raises(NoAudioTrackError, match="no audio track"):
        lse(Clip(frames=clip.frames, fps=25, audio=None, name="silent.mp4"), random_scorer)
    with pytest.raises(ValueError, match="needs 25 fps"):
        lse(Clip(frames=clip.frames, fps=30, audio=clip.audio), random_scorer)
    with pytest.raises(NoFaceError, match="no face"):
        lse(faceless_clip(), random_scorer)
    with pytest.raises(ValueError, match="at least 6 frames"):
        lse(Clip(frames=clip.frames[:5], fps=25, audio=clip.audio[: 5 * 640]), random_scorer)
    with pytest.raises(ValueError, match="same shape"):
        lse_from_embeddings(np.zeros((5, 4)), np.zeros((6, 4)))


# ---------------------------------------------------------------------------------------------
# weights: official layout, trained-here, missing
# ---------------------------------------------------------------------------------------------
def _official_state(model: SyncNet) -> dict:
    out = {}
    for key, value in model.state_dict().items():
        for official, ours in OFFICIAL_KEY_PREFIXES:
            if key.startswith(ours):
                key = official + key[len(ours):]
        out[key] = value.clone()
    return out


def test_load_official_layout_and_trained_here(tmp_path):
    torch.manual_seed(1)
    ref = SyncNet().eval()
    official = {k: v for k, v in _official_state(ref).items() if not k.endswith("num_batches_tracked")}  # 2017 file
    torch.save(official, tmp_path / "syncnet_v2.model")
    model, label = load_syncnet(tmp_path / "syncnet_v2.model")
    assert label == "syncnet_v2"
    a, x = torch.randn(2, 1, 13, 20), torch.rand(2, 3, 5, 224, 224) * 255
    with torch.no_grad():
        assert torch.equal(model.forward_audio(a), ref.forward_audio(a))
        assert torch.equal(model.forward_lips(x), ref.forward_lips(x))
    save_trained_syncnet(ref, tmp_path / "mine.pt")
    model, label = load_syncnet(tmp_path / "mine.pt")
    assert label == "trained-here"
    with torch.no_grad():
        assert torch.equal(model.forward_audio(a), ref.forward_audio(a))
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="neither"):
        load_syncnet(tmp_path / "bad.pt")


def test_missing_syncnet_weights(tmp_path, monkeypatch):
    with pytest.raises(WeightsMissingError, match="syncnet_v2.model"):
        load_syncnet(tmp_path / "nope" / "syncnet_v2.model")
    monkeypatch.setenv("SADTALKER_LAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsMissingError) as e:
        load_syncnet()
    assert "syncnet_v2.model" in str(e.value) and "syncnet_trained_here.pt" in str(e.value)


# ---------------------------------------------------------------------------------------------
# training the offline stand-in
# ---------------------------------------------------------------------------------------------
def _synthetic_pair(num_frames: int, seed: int):
    """A 'mouth' whose opening follows the audio: open (tall dark box) on frames with a noise burst."""
    rng = np.random.default_rng(seed)
    talking = rng.random(num_frames) > 0.5
    audio = np.concatenate([(0.5 if on else 0.0) * rng.standard_normal(SR // 25) for on in talking])
    crops = np.full((num_frames, 224, 224, 3), 128, np.uint8)
    for t, on in enumerate(talking):
        half = 35 if on else 3
        crops[t, 150 - half: 150 + half, 70:154] = 20
    return crops, audio.astype(np.float32)


def test_train_syncnet_on_a_synthetic_dataset(tmp_path):
    pairs = [_synthetic_pair(14, s) for s in range(2)]
    result = train_syncnet(pairs, SyncTrainConfig(steps=2, batch_size=4, lr=1e-4, min_negative_shift=3),
                           progress=False)
    assert len(result.losses) == 2 and np.isfinite(result.losses).all() and not result.model.training
    path = save_trained_syncnet(result, tmp_path / "syncnet_trained_here.pt")
    scorer = SyncNetScorer.from_file(path)
    assert scorer.label == "trained-here"
    crops, audio = _synthetic_pair(12, 7)
    lips, auds = sync_embeddings(scorer.model, crops, syncnet_mfcc(audio), audio_frames=len(audio) // 640)
    r = lse_from_embeddings(lips, auds, label=scorer.label)
    assert r.num_windows == 7 and np.isfinite(r.distance)
    with pytest.raises(ValueError, match="at least 6"):
        train_syncnet([_synthetic_pair(5, 0)], SyncTrainConfig(steps=1, batch_size=2), progress=False)


def test_training_pairs_from_clips_use_the_evaluation_crops(clip):
    from sadtalker_lib.metrics.faces import track_faces

    (pair,) = make_pairs([{"frames": clip.frames, "audio": clip.audio}])  # the corpus' clip dict layout
    assert pair.crops.shape == (16, 224, 224, 3) and pair.num_windows == 11 and pair.mfcc.shape[0] == 13
    assert np.array_equal(pair.crops, face_crops(clip.frames, track_faces(clip.frames)))
