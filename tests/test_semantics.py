"""The get_facerender_data glue (sadtalker_lib.semantics): windows, batch layout, still / expression scale,
full mode and the --input_yaw/pitch/roll interpolation, against fixtures/mapping.npz and by construction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.semantics import (FULL_DIM, MOTION_DIM, SEMANTIC_RADIUS, camera_degrees, frame_windows,
                                     from_batch_rows, get_facerender_semantics, is_full_preprocess, source_window,
                                     target_coefficients, to_batch_rows)


def _coeffs(t: int, c: int = MOTION_DIM) -> torch.Tensor:
    return torch.arange(t * c, dtype=torch.float32).reshape(t, c)


def _source73() -> torch.Tensor:
    return -1.0 - torch.arange(FULL_DIM, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
def test_crop_semantics_match_official(fixture):
    fx = fixture("mapping")
    assert int(fx["semantic_radius"]) == SEMANTIC_RADIUS
    sem = get_facerender_semantics(fx["coeff_70"], fx["first_coeff_73"], batch_size=int(fx["batch_size"]),
                                   input_yaw=fx["camera_yaw_in_list"].tolist(),
                                   input_roll=fx["camera_roll_in_list"].tolist())
    assert sem.frame_num == int(fx["frame_num"]) == 75
    for ours, key in ((sem.source_semantics, "source_semantics"), (sem.target_semantics, "target_semantics_list"),
                      (sem.yaw_c_seq, "yaw_c_seq"), (sem.roll_c_seq, "roll_c_seq")):
        assert ours.dtype == torch.float32 and tuple(ours.shape) == fx[key].shape, key
        assert np.array_equal(ours.numpy(), fx[key]), key  # max abs diff 0
    assert sem.pitch_c_seq is None


@pytest.mark.parity
def test_full_still_semantics_match_official(fixture):
    fx = fixture("mapping")
    sem = get_facerender_semantics(fx["coeff_70"], fx["first_coeff_73"], batch_size=2, preprocess="full", still=True)
    assert np.array_equal(sem.source_semantics.numpy(), fx["full_source_semantics"])
    assert np.array_equal(sem.target_semantics.numpy(), fx["full_target_semantics_list"])


@pytest.mark.parity
def test_still_expression_scale_matches_official(fixture):
    fx = fixture("mapping")
    sem = get_facerender_semantics(fx["coeff_70"], fx["first_coeff_73"], batch_size=2, still=True,
                                   expression_scale=1.5)
    assert np.array_equal(sem.target_semantics.numpy(), fx["still_es15_target_semantics_list"])
    assert np.array_equal(sem.source_semantics.numpy(), fx["source_semantics"])  # the source is never scaled


# ------------------------------------------------------------------------------------------ behaviour
def test_windows_are_edge_clamped():
    c = _coeffs(5, 2)
    w = frame_windows(c, radius=2)  # [5, 2, 5]
    assert w.shape == (5, 2, 5)
    assert w[0, 0].tolist() == c[[0, 0, 0, 1, 2], 0].tolist()
    assert w[2, 1].tolist() == c[[0, 1, 2, 3, 4], 1].tolist()
    assert w[4, 0].tolist() == c[[2, 3, 4, 4, 4], 0].tolist()
    one = frame_windows(c[:1])  # a one-frame clip: every window entry is that frame
    assert one.shape == (1, 2, 27) and torch.equal(one[0], c[0][:, None].expand(2, 27))
    s = source_window(torch.stack([c[3], c[4]]), radius=1)  # the first row of a source .mat is used
    assert torch.equal(s, c[3][:, None].expand(2, 3))


def test_batch_rows_split_time_and_pad_with_last():
    x = torch.arange(5.0)
    rows = to_batch_rows(x, 2)
    assert rows.tolist() == [[0, 1, 2], [3, 4, 4]]  # row b holds frames b*S .., the last item repeated
    assert from_batch_rows(rows, 5).tolist() == [0, 1, 2, 3, 4]
    assert to_batch_rows(x, 1).shape == (1, 5) and to_batch_rows(x[:1], 3).tolist() == [[0], [0], [0]]
    y = torch.randn(7, 3, 4)
    assert torch.equal(from_batch_rows(to_batch_rows(y, 3), 7), y)
    with pytest.raises(ValueError):
        to_batch_rows(x, 0)
    with pytest.raises(ValueError):
        from_batch_rows(rows, 7)


def test_padding_repeats_the_last_window_not_the_last_frame():
    sem = get_facerender_semantics(_coeffs(5), _source73(), batch_size=2)
    flat = sem.target_semantics.flatten(0, 1)  # [6, 70, 27]
    assert torch.equal(flat[5], flat[4])
    assert not torch.equal(flat[5], frame_windows(torch.cat([_coeffs(5), _coeffs(5)[-1:]]))[5])
    assert torch.equal(sem.frames(sem.target_semantics), flat[:5])


def test_target_coefficients_modes():
    gen, src = _coeffs(4), _source73()
    plain = target_coefficients(gen, src)
    assert torch.equal(plain, gen)
    scaled = target_coefficients(gen, src, expression_scale=2.0)
    assert torch.equal(scaled[:, :64], 2 * gen[:, :64]) and torch.equal(scaled[:, 64:], gen[:, 64:])
    still = target_coefficients(gen, src, still=True, expression_scale=2.0)
    assert torch.equal(still[:, :64], 2 * gen[:, :64]) and torch.equal(still[:, 64:], src[64:70].expand(4, 6))
    full = target_coefficients(gen, src, full=True)
    assert full.shape == (4, 73) and torch.equal(full[:, 70:], src[70:].expand(4, 3))
    full_still = target_coefficients(gen, src, full=True, still=True)
    assert torch.equal(full_still[:, 64:], src[64:].expand(4, 9))
    assert torch.equal(gen, _coeffs(4))  # inputs untouched
    # extra generated columns are ignored; float64 input is computed in float64
    wide = torch.cat([gen, torch.zeros(4, 3)], 1)
    assert torch.equal(target_coefficients(wide, src), gen)
    assert target_coefficients(gen.double(), src).dtype == torch.float64


def test_full_mode_shapes():
    assert is_full_preprocess("full") and is_full_preprocess("extfull") and not is_full_preprocess("crop")
    sem = get_facerender_semantics(_coeffs(3), _source73()[None], batch_size=2, preprocess="extfull")
    assert sem.source_semantics.shape == (2, 73, 27) and sem.target_semantics.shape == (2, 2, 73, 27)
    assert sem.batch_size == 2 and sem.frame_num == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="73"):
        get_facerender_semantics(_coeffs(3), _source73()[:70], preprocess="full")
    with pytest.raises(ValueError, match="70"):
        get_facerender_semantics(_coeffs(3, 64), _source73())
    with pytest.raises(ValueError):
        get_facerender_semantics(_coeffs(3), _source73(), batch_size=0)
    with pytest.raises(ValueError):
        frame_windows(torch.zeros(0, 70))
    with pytest.raises(ValueError, match="empty"):
        camera_degrees([], 10)


def test_camera_degrees():
    assert camera_degrees([5], 4).tolist() == [5, 5, 5, 5]
    seq = camera_degrees([0, 20, -10], 75)
    speed = 50 / 74  # total path / (frames - 1)
    assert seq.shape == (75,) and seq[0] == 0 and seq.max() == 20
    assert torch.allclose(seq[1:30] - seq[:29], torch.full((29,), speed))
    assert abs(float(seq[-1]) - (20 - 44 * speed)) < 1e-5 and seq[-1] > -10  # -10 is never reached (quirk)
    short = camera_degrees([0, 30], 3)
    assert short.tolist() == [0, 15, 15]  # arange stops before 30, then padded with the last value
    assert camera_degrees([0, 10, 10, 0], 11).tolist() == [0, 2, 4, 6, 8, 10, 8, 6, 4, 2, 2]
    assert camera_degrees([7, 7], 3).tolist() == [7, 7, 7] and camera_degrees([3, 9], 1).tolist() == [3]


def test_frame_windows_of_a_range_equal_the_slice_of_all():
    c = torch.randn(40, 70)
    full = frame_windows(c)
    for start, stop in ((0, 3), (5, 9), (38, 42), (39, 40)):
        torch.testing.assert_close(frame_windows(c, start=start, stop=stop), full[start:stop], rtol=0, atol=0)
