"""Diversity (eval.diversity) and the head-motion features behind it (eval.head_pose)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _eval_synthetic import face_clip
from sadtalker_lib.metrics.diversity import diversity
from sadtalker_lib.metrics.faces import track_faces
from sadtalker_lib.metrics.head_pose import GENERIC_FACE_3D, PNP_LANDMARKS, HopenetHeadPose, PnPHeadPose, head_motion
from sadtalker_lib.metrics.weights import WeightsMissingError


def test_diversity_is_mean_std_over_dims():
    f = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0], [np.nan, 7.0]])  # last frame: no face
    expected = (np.std([0.0, 2.0, 4.0]) + np.std([1.0, 1.0, 4.0])) / 2
    assert diversity(f) == pytest.approx(expected)
    assert diversity(np.ones((10, 3))) == 0.0
    with pytest.raises(ValueError, match="at least 2 frames"):
        diversity(np.array([[1.0, 2.0], [np.nan, 1.0]]))


def _rotation(yaw, pitch, roll):
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rz @ ry @ rx


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.3, -0.1, 0.05), (-0.2, 0.25, -0.15)])
def test_pnp_recovers_a_known_head_pose(angles):
    """Project the generic face at a known rotation with the estimator's camera; solvePnP must give it back."""
    w = h = 256
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], float)
    points = GENERIC_FACE_3D @ _rotation(*angles).T + np.array([0.0, 0.0, 1500.0])
    proj = points @ camera.T
    lm = np.zeros((68, 2))
    lm[list(PNP_LANDMARKS)] = proj[:, :2] / proj[:, 2:]
    est = PnPHeadPose().pose(lm, (h, w))
    assert np.allclose(est, angles, atol=1e-4), (est, angles)


def test_head_motion_of_a_clip_follows_the_drift():
    clip = face_clip(12)
    track = track_faces(clip.frames)
    motion = head_motion(clip.frames, track=track)
    assert motion.features.shape == (12, 3) and motion.label == "solvePnP" and motion.valid.all()
    assert np.abs(motion.features).max() < 0.6  # a near-frontal face: angles well under 35 degrees
    still = head_motion(np.repeat(clip.frames[:1], 6, axis=0))
    assert diversity(still.features) < 1e-9 < diversity(motion.features)


def test_hopenet_missing_weights_and_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("SADTALKER_LAB_CACHE", str(tmp_path))
    with pytest.raises(WeightsMissingError, match="hopenet_robust_alpha1.pkl"):
        HopenetHeadPose()
    from sadtalker_lib.metrics.hopenet import Hopenet

    torch.manual_seed(0)
    torch.save(Hopenet().state_dict(), tmp_path / "hopenet.pkl")
    clip = face_clip(2)
    track = track_faces(clip.frames)
    est = HopenetHeadPose(tmp_path / "hopenet.pkl")
    for kind, dim in (("embedding", 2048), ("angles", 3)):
        est.kind = kind
        m = est(clip.frames, track)
        assert m.features.shape == (2, dim) and np.isfinite(m.features).all() and m.label == "Hopenet"
    assert (np.abs(m.features) <= np.deg2rad(99)).all()  # expectation over the 66 bins of [-99, 99) degrees
