"""face-vid2vid's pair augmentation (data.augment): the flip mirrors every label with the frames, the jitter is one
colour change per pair, the time flip swaps frames, and the configs refuse nonsense."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.coeffs import ANGLE, MOTION_DIM, PITCH, ROLL, TRANS, YAW
from sadtalker_lib.data.augment import augment_pairs, flip_pairs, jitter_pairs, mirror_pose_columns
from sadtalker_lib.data.frames import FaceRenderClips
from sadtalker_lib.landmarks import LANDMARK_MIRROR
from sadtalker_lib.train.facevid2vid import FaceVid2VidTrainConfig

SIZE = 32


def _clips(n_clips: int = 2, frames: int = 12) -> FaceRenderClips:
    """Random frames, coefficients with a moving pose and landmarks that are not left-right symmetric."""
    rng = np.random.default_rng(0)
    frames_, coeffs, lms = [], [], []
    for _ in range(n_clips):
        frames_.append(rng.integers(0, 256, (frames, SIZE, SIZE, 3), dtype=np.uint8))
        c = rng.normal(0, 0.1, (frames, MOTION_DIM)).astype(np.float32)
        coeffs.append(c)
        lms.append(rng.uniform(2, SIZE - 3, (frames, 68, 2)))
    return FaceRenderClips(frames_, coeffs, SIZE, landmarks=lms)


def test_flip_mirrors_frames_landmarks_and_pose():
    clips = _clips()
    pairs = clips.sample(6, np.random.default_rng(1))
    which = np.array([True, False, True, True, False, False])
    out = flip_pairs(pairs, which)
    m, keep = torch.as_tensor(which), torch.as_tensor(~which)
    for name in ("source", "driving"):
        assert torch.equal(getattr(out, name)[m], torch.flip(getattr(pairs, name)[m], dims=[-1]))
        assert torch.equal(getattr(out, name)[keep], getattr(pairs, name)[keep])
    lm, lm0 = out.driving_landmarks[m], pairs.driving_landmarks[m]
    # the right eye's outer corner (36) of the mirror is where the left one (45) was, reflected
    assert torch.allclose(lm[:, 36, 0], -lm0[:, 45, 0]) and torch.allclose(lm[:, 36, 1], lm0[:, 45, 1])
    assert torch.allclose(lm[:, 8], lm0[:, 8] * torch.tensor([-1.0, 1.0]))  # the chin stays on the midline
    for name in ("source_coeffs", "driving_coeffs"):
        a, b = getattr(out, name)[m], getattr(pairs, name)[m]
        assert torch.equal(a[:, PITCH], b[:, PITCH]) and torch.equal(a[:, :64], b[:, :64])
        assert torch.equal(a[:, YAW], -b[:, YAW]) and torch.equal(a[:, ROLL], -b[:, ROLL])
        assert torch.equal(a[:, TRANS.start], -b[:, TRANS.start]) and torch.equal(a[:, TRANS.start + 1:],
                                                                                  b[:, TRANS.start + 1:])
    assert torch.equal(out.driving_window[m][:, YAW], -pairs.driving_window[m][:, YAW])
    again = flip_pairs(out, which)  # a mirror of a mirror is the pair itself
    for name in ("source", "driving", "source_landmarks", "driving_landmarks", "source_coeffs", "driving_window"):
        assert torch.allclose(getattr(again, name), getattr(pairs, name)), name
    with pytest.raises(ValueError, match="booleans"):
        flip_pairs(pairs, [True, False])


def test_pose_mirror_agrees_with_the_face_model():
    """The face model's landmarks of the mirrored pose are the mirrored landmarks of the pose (neutral expression):
    the signs of yaw, roll and tx in mirror_pose_columns are the geometry's, not a guess."""
    from sadtalker_lib.data.render import model_landmarks

    rng = np.random.default_rng(3)
    c = np.zeros((8, MOTION_DIM), np.float32)
    c[:, ANGLE] = rng.uniform(-0.3, 0.3, (8, 3))
    c[:, TRANS] = rng.uniform(-0.1, 0.1, (8, 3))
    lm = model_landmarks(c)  # [8, 68, 2] px at 224
    mirrored = model_landmarks(mirror_pose_columns(torch.as_tensor(c)).numpy())
    centre = 223 / 2  # the image column of the camera axis
    expected = lm[:, list(LANDMARK_MIRROR)].copy()
    expected[..., 0] = 2 * centre - expected[..., 0]
    err = np.abs(mirrored - expected).max()
    moved = np.abs(lm - model_landmarks(np.zeros_like(c))).max()
    assert err < 0.05 * moved, f"mirrored pose off by {err:.2f} px (poses move landmarks {moved:.1f} px)"
    wrong = c.copy()
    wrong[:, PITCH] *= -1  # a wrong mirror (pitch negated too) is far off
    assert np.abs(model_landmarks(mirror_pose_columns(torch.as_tensor(wrong)).numpy()) - expected).max() > 5 * err


def test_jitter_is_one_colour_change_per_pair():
    clips = _clips()
    pairs = clips.pairs([0, 0, 1], [3, 5, 2], [3, 7, 2])  # pairs 0 and 2: the same frame twice
    none = jitter_pairs(pairs, np.array([[1.0, 1.0, 1.0, 0.0]] * 3))
    assert torch.allclose(none.source, pairs.source, atol=1e-6)
    out = jitter_pairs(pairs, np.array([[1.1, 0.9, 1.1, 0.05], [0.9, 1.1, 0.9, -0.05], [1.05, 1.0, 1.0, 0.0]]))
    assert out.source.min() >= 0 and out.source.max() <= 1
    assert torch.equal(out.source[0], out.driving[0])  # one change for both frames of a pair
    assert (out.source[0] - pairs.source[0]).abs().mean() > 0.01
    assert torch.equal(out.driving_landmarks, pairs.driving_landmarks)  # colour moves no landmark
    rng = np.random.default_rng(0)
    same = augment_pairs(pairs, rng, horizontal_flip=False, jitter=(0, 0, 0, 0))
    assert torch.equal(same.source, pairs.source)
    with pytest.raises(ValueError, match="hue"):
        augment_pairs(pairs, rng, jitter=(0.1, 0.1, 0.1, 0.7))
    with pytest.raises(ValueError, match="jitter"):
        FaceVid2VidTrainConfig.tiny(jitter=(0.1, -0.1, 0.1, 0.1))


def test_time_flip_swaps_frames_and_leaves_the_other_draws():
    clips = _clips()
    plain = clips.sample(64, np.random.default_rng(7), motion_candidates=3)
    flipped = clips.sample(64, np.random.default_rng(7), motion_candidates=3, time_flip=True)
    assert torch.equal(plain.clip, flipped.clip)
    swapped = plain.source_index != flipped.source_index
    assert torch.equal(flipped.source_index[swapped], plain.driving_index[swapped])
    assert torch.equal(flipped.driving_index[swapped], plain.source_index[swapped])
    assert 16 < int(swapped.sum()) < 48
    # the windows follow the frames: the driving window of a swapped pair is the one of its new driving frame
    k = int(torch.nonzero(swapped)[0])
    assert torch.equal(flipped.driving_window[k], clips.windows(int(flipped.clip[k]))[int(flipped.driving_index[k])])
