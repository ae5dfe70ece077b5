"""FID (eval.fid): Frechet distance vs pytorch-fid, feature preprocessing, local-only weight loading."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sadtalker_lib.metrics.fid import (FID_WEIGHTS_FILE, activation_statistics, fid_from_features, frechet_distance,
                      inception_features, load_inception)
from sadtalker_lib.metrics.weights import WeightsMissingError


@pytest.mark.parametrize("n1,n2,dim,shift", [(60, 80, 8, 0.3), (300, 250, 32, 1.0), (20, 25, 64, 0.0)])
def test_frechet_distance_matches_pytorch_fid(n1, n2, dim, shift):
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(n1 + dim)
    a = rng.normal(size=(n1, dim)) @ rng.normal(size=(dim, dim))  # correlated features
    b = rng.normal(size=(n2, dim)) * 1.3 + shift
    mu1, s1 = activation_statistics(a)
    mu2, s2 = activation_statistics(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes sqrtm's deprecated `disp`
        ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    print(f"FID n={n1}/{n2} d={dim}: pytorch-fid {ref:.10f} ours {ours:.10f} diff {abs(ref - ours):.2e}")
    assert abs(ref - ours) <= 1e-9 * max(1.0, abs(ref))
    assert fid_from_features(a, b) == pytest.approx(ours, abs=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(1).normal(size=(100, 16))
    assert abs(fid_from_features(f, f)) < 1e-8


def test_fid_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="different dimensions"):
        fid_from_features(np.random.rand(5, 4), np.random.rand(5, 3))


def test_missing_weights_error_says_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsMissingError) as e:
        load_inception()
    msg = str(e.value)
    assert FID_WEIGHTS_FILE in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_features_are_taken_on_256px_frames_in_unit_range():
    seen = []

    def fake_inception(x):  # pytorch-fid's API: list of [B, D, 1, 1]
        seen.append(x)
        return [x.mean(dim=(2, 3), keepdim=True)]

    frames = np.random.default_rng(0).integers(0, 256, size=(3, 300, 300, 3), dtype=np.uint8)
    feats = inception_features(frames, fake_inception, batch_size=2)
    assert feats.shape == (3, 3) and [tuple(s.shape) for s in seen] == [(2, 3, 256, 256), (1, 3, 256, 256)]
    assert 0.0 <= float(min(s.min() for s in seen)) and float(max(s.max() for s in seen)) <= 1.0


def test_load_inception_reads_a_local_file(tmp_path, monkeypatch):
    """pytorch-fid's FID Inception loaded from a local file (random weights here), never downloading."""
    import torchvision
    from pytorch_fid import inception as fi

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b, net.Mixed_5c = fi.FIDInceptionA(192, 32), fi.FIDInceptionA(256, 64)
    net.Mixed_5d = fi.FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = fi.FIDInceptionC(768, 128), fi.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = fi.FIDInceptionC(768, 160), fi.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = fi.FIDInceptionE_1(1280), fi.FIDInceptionE_2(2048)
    path = tmp_path / FID_WEIGHTS_FILE
    torch.save(net.state_dict(), path)

    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(fi, "load_state_dict_from_url", no_download)
    model = load_inception(path)
    assert fi.load_state_dict_from_url is no_download  # the patch inside load_inception was undone
    feats = inception_features(np.zeros((2, 64, 64, 3), np.uint8), model, size=96)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
