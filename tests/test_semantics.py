"""The get_facerender_data glue, streamed (sadtalker_lib.steps.windows, through TalkingHeadPipeline.driving_windows):
windows, still / expression scale, full mode and the --input_yaw/pitch/roll interpolation, against
fixtures/mapping.npz and by construction; and the official batch layout rebuilt by tests/_official_batch.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _official_batch import from_batch_rows, get_facerender_semantics, to_batch_rows

from sadtalker_lib.coeffs import CROP, EXP, EXP_DIM, POSE
from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline
from sadtalker_lib.steps.windows import (FULL_DIM, MOTION_DIM, SEMANTIC_RADIUS, DrivingWindows, camera_degrees,
                                         driving_windows, frame_windows, is_full_preprocess, source_window,
                                         target_coefficients)


def _coeffs(t: int, c: int = MOTION_DIM) -> torch.Tensor:
    return torch.arange(t * c, dtype=torch.float32).reshape(t, c)


def _source73() -> torch.Tensor:
    return -1.0 - torch.arange(FULL_DIM, dtype=torch.float32)


def _streamed(w: DrivingWindows, batch_size: int = 2):
    """Every batch the render loop gets, joined in time order: windows [T, C, 27] and the angle overrides [T]."""
    batches = list(w.batches(batch_size))
    assert [b.start for b in batches] == list(range(0, len(w), batch_size))  # consecutive frames per batch
    assert all(b.windows.shape[0] == min(batch_size, len(w) - b.start) for b in batches)  # no padding
    angles = {n: (None if batches[0].angles[n] is None else torch.cat([b.angles[n] for b in batches]))
              for n in ("yaw", "pitch", "roll")}
    return torch.cat([b.windows for b in batches]), angles


def _time_order(batched: np.ndarray, frame_num: int) -> np.ndarray:
    """Official [B, S, ...] (row b = frames b*S ..) -> [frame_num, ...] in time order."""
    return batched.reshape(-1, *batched.shape[2:])[:frame_num]


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
def test_streamed_crop_windows_match_official(fixture):
    fx = fixture("mapping")
    assert int(fx["semantic_radius"]) == SEMANTIC_RADIUS
    opts = GenerationOptions(batch_size=2, input_yaw=fx["camera_yaw_in_list"].tolist(),
                             input_roll=fx["camera_roll_in_list"].tolist())
    w = TalkingHeadPipeline.driving_windows(fx["first_coeff_73"][0], fx["coeff_70"], opts)
    assert len(w) == int(fx["frame_num"]) == 75
    windows, angles = _streamed(w, opts.batch_size)
    t = len(w)
    for ours, ref in ((windows, _time_order(fx["target_semantics_list"], t)),
                      (w.source, fx["source_semantics"][0]),
                      (angles["yaw"], _time_order(fx["yaw_c_seq"], t)),
                      (angles["roll"], _time_order(fx["roll_c_seq"], t))):
        assert ours.dtype == torch.float32 and tuple(ours.shape) == ref.shape
        assert np.array_equal(ours.numpy(), ref)  # max abs diff 0
    assert np.array_equal(fx["source_semantics"][0], fx["source_semantics"][1])
    assert angles["pitch"] is None


@pytest.mark.parity
def test_streamed_full_still_windows_match_official(fixture):
    fx = fixture("mapping")
    opts = GenerationOptions(batch_size=2, preprocess="full", still=True)
    w = TalkingHeadPipeline.driving_windows(fx["first_coeff_73"][0], fx["coeff_70"], opts)
    windows, _ = _streamed(w)
    assert np.array_equal(windows.numpy(), _time_order(fx["full_target_semantics_list"], 75))
    assert np.array_equal(w.source.numpy(), fx["full_source_semantics"][0])


@pytest.mark.parity
def test_streamed_still_expression_scale_matches_official(fixture):
    fx = fixture("mapping")
    opts = GenerationOptions(batch_size=2, still=True, expression_scale=1.5)
    w = TalkingHeadPipeline.driving_windows(fx["first_coeff_73"][0], fx["coeff_70"], opts)
    windows, _ = _streamed(w)
    assert np.array_equal(windows.numpy(), _time_order(fx["still_es15_target_semantics_list"], 75))
    assert np.array_equal(w.source.numpy(), fx["source_semantics"][0])  # the source is never scaled


@pytest.mark.parity
def test_official_batch_layout_helper_matches_official(fixture):
    """tests/_official_batch.py (the official layout, for batch-route comparisons) rebuilds the fixture exactly,
    padding included (the 76th window repeats the 75th)."""
    fx = fixture("mapping")
    sem = get_facerender_semantics(fx["coeff_70"], fx["first_coeff_73"], batch_size=int(fx["batch_size"]),
                                   input_yaw=fx["camera_yaw_in_list"].tolist(),
                                   input_roll=fx["camera_roll_in_list"].tolist())
    for ours, key in ((sem.source_semantics, "source_semantics"), (sem.target_semantics, "target_semantics_list"),
                      (sem.yaw_c_seq, "yaw_c_seq"), (sem.roll_c_seq, "roll_c_seq")):
        assert ours.dtype == torch.float32 and np.array_equal(ours.numpy(), fx[key]), key
    full = get_facerender_semantics(fx["coeff_70"], fx["first_coeff_73"], batch_size=2, preprocess="full", still=True)
    assert np.array_equal(full.target_semantics.numpy(), fx["full_target_semantics_list"])


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


def test_official_padding_repeats_the_last_window_not_the_last_frame():
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
    assert torch.equal(scaled[:, EXP], 2 * gen[:, EXP]) and torch.equal(scaled[:, POSE], gen[:, POSE])
    still = target_coefficients(gen, src, still=True, expression_scale=2.0)
    assert torch.equal(still[:, EXP], 2 * gen[:, EXP]) and torch.equal(still[:, POSE], src[POSE].expand(4, 6))
    full = target_coefficients(gen, src, full=True)
    assert full.shape == (4, 73) and torch.equal(full[:, CROP], src[CROP].expand(4, 3))
    full_still = target_coefficients(gen, src, full=True, still=True)
    assert torch.equal(full_still[:, EXP_DIM:], src[EXP_DIM:].expand(4, 9))
    assert torch.equal(gen, _coeffs(4))  # inputs untouched
    # extra generated columns are ignored; float64 input is computed in float64
    wide = torch.cat([gen, torch.zeros(4, 3)], 1)
    assert torch.equal(target_coefficients(wide, src), gen)
    assert target_coefficients(gen.double(), src).dtype == torch.float64


def test_full_mode_shapes():
    assert is_full_preprocess("full") and is_full_preprocess("extfull") and not is_full_preprocess("crop")
    w = driving_windows(_coeffs(3), _source73()[None], preprocess="extfull")
    assert w.source.shape == (73, 27) and w.target.shape == (3, 73) and len(w) == 3
    assert [tuple(b.windows.shape) for b in w.batches(2)] == [(2, 73, 27), (1, 73, 27)]


def test_bad_inputs():
    with pytest.raises(ValueError, match="73"):
        driving_windows(_coeffs(3), _source73()[:MOTION_DIM], preprocess="full")
    with pytest.raises(ValueError, match="70"):
        driving_windows(_coeffs(3, 64), _source73())
    with pytest.raises(ValueError, match="batch_size"):
        next(driving_windows(_coeffs(3), _source73()).batches(0))
    with pytest.raises(ValueError, match="start"):
        next(driving_windows(_coeffs(3), _source73()).batches(2, start=3))
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


def test_batches_of_a_range_and_camera_overrides():
    w = driving_windows(torch.randn(9, 70), _source73(), input_pitch=[0, 8], radius=2)
    every = frame_windows(w.target, 2)
    got = list(w.batches(3, start=2, stop=7))
    assert [b.start for b in got] == [2, 5]
    torch.testing.assert_close(torch.cat([b.windows for b in got]), every[2:7], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([b.pitch for b in got]), camera_degrees([0, 8], 9)[2:7], rtol=0, atol=0)
    assert got[0].yaw is None and got[0].roll is None
