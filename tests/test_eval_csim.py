"""CSIM (eval.csim): identity similarity with the offline dlib embedder, ArcFace loading, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _eval_synthetic import astronaut_256
from sadtalker_lib.metrics.csim import ArcFaceEmbedder, DlibFaceEmbedder, cosine_similarity, csim, default_embedder
from sadtalker_lib.metrics.faces import NoFaceError
from sadtalker_lib.metrics.weights import WeightsMissingError


@pytest.fixture(scope="module")
def embedder():
    return DlibFaceEmbedder()


def test_csim_of_an_image_with_itself_is_one(embedder):
    import skimage.data

    img = skimage.data.astronaut()
    r = csim(img, img[None], embedder)
    assert r.label == "dlib" and r.value == pytest.approx(1.0, abs=1e-12)


def test_csim_drops_for_another_face_and_skips_faceless_frames(embedder):
    face = astronaut_256()
    other = np.ascontiguousarray(face[:, ::-1])  # the mirror image: same person, slightly different embedding
    blank = np.full_like(face, 120)
    r = csim(face, np.stack([face, other, blank]), embedder, name="x.mp4")
    assert r.per_frame[0] == pytest.approx(1.0) and 0.5 < r.per_frame[1] < 1.0 and np.isnan(r.per_frame[2])
    assert r.value == pytest.approx(np.nanmean(r.per_frame)) and "without a face" in r.notes[0]


def test_csim_bad_input(embedder):
    face = astronaut_256()
    blank = np.full_like(face, 120)
    with pytest.raises(NoFaceError, match="source image"):
        csim(blank, face[None], embedder)
    with pytest.raises(NoFaceError, match="no face found in any frame"):
        csim(face, np.stack([blank, blank]), embedder)


def test_arcface_missing_weights_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SADTALKER_LAB_CACHE", str(tmp_path))
    with pytest.raises(WeightsMissingError, match="backbone.pth"):
        ArcFaceEmbedder()
    assert isinstance(default_embedder(), DlibFaceEmbedder)  # offline default when ArcFace is absent


def test_arcface_loads_an_iresnet_backbone(tmp_path):
    from sadtalker_lib.metrics.arcface import IResNet, IResNetConfig

    torch.manual_seed(0)
    net = IResNet(IResNetConfig(layers=(2, 2, 2, 2)))  # r18: same layout as r50 / r100, smaller
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    emb = ArcFaceEmbedder(tmp_path / "backbone.pth")
    assert emb.model.config.layers == (2, 2, 2, 2)
    face = astronaut_256()
    crop = emb.align(face, _landmarks(face))
    assert crop.shape == (112, 112, 3)
    e = emb.embed(face)
    assert e.shape == (512,) and cosine_similarity(e, emb.embed(face)) == pytest.approx(1.0)


def _landmarks(img):
    from sadtalker_lib.face.detect import detect_landmarks

    return detect_landmarks(img)
