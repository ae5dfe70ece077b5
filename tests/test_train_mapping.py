"""MappingNet evaluation (issue 14): heldout.json beside copy-source and the renderer's own keypoints, the inference
render loop = the training-time mapped frames, and the cross-identity motion measure.

Tiny synthetic clips (``test_train_facerender.synthetic_clips``) and untrained tiny networks: these tests check
the bookkeeping (each baseline is what its name says), not learning (``test_train_facerender`` does that).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sadtalker_lib.models.mapping import MappingNet
from sadtalker_lib.steps.keypoints import facevid2vid_keypoints, keypoint_transformation
from sadtalker_lib.train import facerender_eval
from sadtalker_lib.train.facerender_eval import (MOUTH_POINTS, REFERENCE, CrossIdentityResult, animate,
                                                 cross_identity_metrics, driving_coefficients,
                                                 reference_frames, relative_motion_error, shifted_row,
                                                 transferred_motion_error)
from sadtalker_lib.train.facerender_losses import keypoint_l1
from sadtalker_lib.train.facevid2vid import FaceVid2VidTrainConfig, build_facevid2vid, render_pairs
from sadtalker_lib.train.mapping import MappingTrainConfig, mapping_heldout_report, render_mapped
from _eval_synthetic import mouth_opening_coeffs
from sadtalker_lib.workbench import SYNC_CHECK_SHIFT_FRAMES, lip_sync_check
from test_train_facerender import synthetic_clips


@pytest.fixture(scope="module")
def nets():
    torch.set_num_threads(1)  # tiny tensors on shared cores
    torch.manual_seed(0)
    r = build_facevid2vid(FaceVid2VidTrainConfig.tiny()).eval()
    m = MappingNet(MappingTrainConfig.tiny().mapping).eval()
    return r, m, synthetic_clips(1, frames=14, seed=3)


def test_heldout_report_baselines_are_what_they_say(nets):
    r, m, held = nets
    report = mapping_heldout_report(m, r, {"heldout": held}, per_clip=2, log=lambda *a: None)
    assert report.stage == "mapping"
    pairs = held.first_frame_pairs(2)
    with torch.no_grad():
        kp_c = r.kp_extractor(pairs.source)
        k_s = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.source))
        k_d = facevid2vid_keypoints(kp_c, r.he_estimator(pairs.driving))
        k_m = keypoint_transformation(kp_c, m(pairs.driving_window))
    kp = report.metrics["keypoint_l1"]
    assert kp.value == pytest.approx(float(keypoint_l1(k_m, k_d)), rel=1e-5)
    assert kp.baselines["copy_source"] == pytest.approx(float(keypoint_l1(k_s, k_d)), rel=1e-5)
    assert kp.lower_is_better
    mapped, _ = render_mapped(r, m, pairs)
    pics = render_pairs(r, pairs, m)
    l1 = report.metrics["image_l1"]
    assert l1.value == pytest.approx(float((mapped - pairs.driving).abs().mean()), rel=1e-5)
    assert l1.baselines["copy_source"] == pytest.approx(float((pairs.source - pairs.driving).abs().mean()), rel=1e-5)
    assert l1.baselines["heestimator_keypoints"] == pytest.approx(
        float((pics["reconstruction"] - pairs.driving).abs().mean()), rel=1e-5)
    assert "heldout/keypoint_l1" in report.metrics and "heldout/image_l1" in report.metrics


def test_inference_loop_renders_the_training_time_frames(nets):
    """``animate`` (driving_windows -> render_stream, as generation) = ``render_mapped`` on the same pairs."""
    r, m, held = nets
    coeffs = held.coeffs[0].numpy()
    frames = animate(r, m, held.frames[0][0].float() / 255, coeffs[0], coeffs, batch_size=4)
    assert frames.shape == (len(coeffs), 3, held.image_size, held.image_size)
    t = np.array([1, 7, 13])
    pairs = held.pairs(np.zeros(3), np.zeros(3), t)
    mapped, _ = render_mapped(r, m, pairs)
    assert (frames[t] - mapped).abs().max() < 1e-3  # batch composition changes float rounding only


def _moving_face(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks [68, 2] with eyes 10 px apart, and a motion [12, 68, 2] that leaves the eyes (the inter-ocular
    scale) the same in every frame."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 40, (68, 2))
    base[36:42] = [25, 30]
    base[42:48] = [35, 30]
    motion = rng.normal(0, 1.0, (12, 68, 2))
    motion[:, 36:48] = 0
    return base, motion


def test_relative_motion_error():
    base, motion = _moving_face(0)
    driving = base + motion
    # a face twice the size that moves the same way, scaled: no error; a still face: error = copy-source
    big = 2 * base
    err, copy = relative_motion_error(big + 2 * motion, driving, big)
    assert err == pytest.approx(0, abs=1e-9) and copy > 1.0
    err, copy2 = relative_motion_error(np.repeat(big[None], 12, 0), driving, big)
    assert err == pytest.approx(copy2) and copy2 == pytest.approx(copy)
    merr, mcopy = relative_motion_error(np.repeat(big[None], 12, 0), driving, big, MOUTH_POINTS)
    assert merr == pytest.approx(mcopy)
    missing = driving.copy()
    missing[1:] = np.nan
    with pytest.raises(ValueError):
        relative_motion_error(driving, missing)


def test_transferred_motion_error():
    base, motion = _moving_face(1)
    motion[0] = 0  # frame 0: the motion's origin
    motion[1] *= 0.1  # a frame that hardly moves
    driving = base + 3 + motion  # B: elsewhere in the frame, the same size
    big = 2 * base  # A: twice the size
    err, copy, n = transferred_motion_error(big + 2 * motion, driving, big, threshold_px=1.0)
    assert err == pytest.approx(0, abs=1e-9) and copy > 1.0 and n == 10  # frames 0 and 1 move too little
    still = np.repeat(big[None], 12, 0)
    err, copy2, _ = transferred_motion_error(still, driving, big, threshold_px=1.0)
    assert err == pytest.approx(copy2) and copy2 == pytest.approx(copy)
    # a frame without a face is skipped; a motion of the wrong sign errs by twice copy-source
    gen = big - 2 * motion
    gen[5] = np.nan
    err, copy3, n3 = transferred_motion_error(gen, driving, big, threshold_px=1.0)
    assert n3 == 9 and err == pytest.approx(2 * copy3)
    assert np.isnan(transferred_motion_error(still, driving, big, threshold_px=1e3)[0])  # nothing moves that much
    missing = driving.copy()
    missing[0] = np.nan
    with pytest.raises(ValueError, match="first driving frame"):
        transferred_motion_error(still, missing, big, threshold_px=1.0)


def test_driving_coefficients():
    rng = np.random.default_rng(2)
    source, drv = rng.normal(size=73).astype(np.float32), rng.normal(size=(6, 73)).astype(np.float32)
    rel = driving_coefficients(source, drv)
    assert rel.shape == (6, 70)
    np.testing.assert_allclose(rel[0], source[:70], atol=1e-6)  # A starts from its own expression and pose
    np.testing.assert_allclose(rel - rel[:1], drv[:, :70] - drv[:1, :70], atol=1e-5)  # and moves as B moves
    np.testing.assert_array_equal(driving_coefficients(source, drv, "absolute"), drv[:, :70])
    with pytest.raises(ValueError, match="driving must be one of"):
        driving_coefficients(source, drv, "mirror")


def test_cross_identity_metrics_pool_the_pairs(monkeypatch):
    """heldout.json's cross-identity rows: portraits and drivers spread over the clips, the motion error pooled over
    moving frames (not a mean of pair ratios), CSIM beside its ceiling and the driving person; rows without a value
    left out."""
    calls = []

    def fake(renderer, mapping, src, src_coeffs, drv, drv_coeffs, *, source_id, driving_id, csim_step):
        calls.append((source_id, driving_id))
        k = len(calls)
        moving = {1: (1.0, 2.0, 10), 2: (3.0, 2.0, 30)}.get(k, (math.nan, math.nan, 0))  # pairs 3-4: no motion
        return CrossIdentityResult(csim=0.9 if k != 4 else math.nan, csim_copy_source=1.0, csim_copy_driving=0.8,
                                   motion_error_px=1.0, motion_copy_source_px=1.0, mouth_error_px=1.0,
                                   mouth_copy_source_px=1.0, n_frames=5, image_size=64, moving_error_px=moving[0],
                                   moving_copy_source_px=moving[1], n_moving=moving[2])

    class Clips:  # what cross_identity_metrics reads of data.frames.FaceRenderClips
        def __init__(self, ids):
            self.ids = ids
            self.frames, self.coeffs = [torch.zeros(5, 3, 64, 64)] * len(ids), [torch.zeros(5, 70)] * len(ids)

        def __len__(self):
            return len(self.ids)

    monkeypatch.setattr(facerender_eval, "cross_identity_animation", fake)
    out = cross_identity_metrics(None, None, Clips(["p0", "p1", "p2"]), Clips(["d0", "d1"]), n=2, log=lambda *a: None)
    assert calls == [("p0", "d0"), ("p0", "d1"), ("p2", "d0"), ("p2", "d1")]  # first and last of each
    motion = out["cross_identity/motion_transfer_error_px"]
    assert motion.value == pytest.approx((1.0 * 10 + 3.0 * 30) / 40) and motion.baselines == {"copy_source": 2.0}
    assert motion.lower_is_better and "2 of 4 pairs, 40 moving frames" in motion.label
    csim = out["cross_identity/csim"]
    assert not csim.lower_is_better and csim.value == pytest.approx(0.9)
    assert csim.baselines == pytest.approx({"copy_source": 1.0, "driving_person": 0.8}) and "3 of 4 pairs" in csim.label


def test_lip_sync_check():
    shifted = f"generated video, audio delayed {SYNC_CHECK_SHIFT_FRAMES} frames"
    rows = {"generated video": {"offset_frames": -1, "lse_c": 0.3}, shifted: {"offset_frames": -9, "lse_c": 0.1}}
    assert lip_sync_check(rows)["lip-syncs"] == "yes"
    rows["generated video"]["offset_frames"] = -9  # today's main job: out of sync
    assert lip_sync_check(rows)["lip-syncs"] == "NO"
    rows["generated video"].update(offset_frames=0, lse_c=0.05)  # in sync but no sharper than the shifted copy
    assert lip_sync_check(rows)["LSE-C above the shifted copy"] == "NO"
    assert lip_sync_check({"generated video": {"error": "no face"}})["lip-syncs"] == "n/a"
    ref = {REFERENCE: {"offset_frames": 0, "lse_c": 0.2}, shifted_row(REFERENCE): {"offset_frames": -8, "lse_c": 0.0}}
    assert lip_sync_check({**rows, **ref}, REFERENCE)["lip-syncs"] == "yes"
    assert lip_sync_check({**rows, **ref})["lip-syncs"] == "NO"  # the generated video's rows by default


def test_reference_frames_open_the_mouth_with_the_coefficients():
    """The talking chain's reference renderer: the coefficients' mouth gap, rendered without a network at the
    requested size, shows in dlib's inner-lip aperture of the frames."""
    from sadtalker_lib.metrics.lipsync import lip_track, mouth_features

    amounts = 2.0 * np.abs(np.sin(np.arange(12) * 0.6))
    coeffs = mouth_opening_coeffs(amounts)
    frames = reference_frames(coeffs, 128)
    assert frames.shape == (12, 128, 128, 3) and frames.dtype == np.uint8
    aperture = mouth_features(lip_track(frames).landmarks)[:, 0]
    assert np.corrcoef(aperture, amounts)[0, 1] > 0.8
    assert reference_frames(coeffs[:2], 64).shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="coefficients"):
        reference_frames(coeffs[:, :10], 64)


def test_mapped_rendering_runs_where_the_renderer_is():
    """Held-out pairs are held on the CPU; rendering moves them to the renderer's device (on an H200 the stage's
    held-out report fed CPU pairs to the CUDA renderer). "meta" stands in for the GPU: shapes only."""
    from sadtalker_lib.data.frames import FaceRenderClips
    from sadtalker_lib.models.mapping import MappingNetConfig

    r = build_facevid2vid(FaceVid2VidTrainConfig.tiny()).to("meta")
    mapping = MappingNet(MappingNetConfig.tiny()).to("meta")
    pairs = FaceRenderClips([np.zeros((40, 32, 32, 3), np.uint8)], [np.zeros((40, 70))], image_size=32
                            ).first_frame_pairs(2)
    frames, mass = render_mapped(r, mapping, pairs)
    assert frames.device.type == "meta" and tuple(frames.shape) == (2, 3, 32, 32) and tuple(mass.shape) == (2,)


def test_talking_chain_reads_whether_the_rendered_corners_follow_the_coefficients():
    """The width row: rendered corners that move with the coefficients' read r > 0, against them r < 0 (what
    section 32 of the results found in make main's face); no width, or no face, reads NaN."""
    from sadtalker_lib.train.facerender_eval import TalkingChain

    rng = np.random.default_rng(1)
    gap = np.convolve(rng.random(100), np.ones(4) / 4, "same")
    width = 0.6 + 0.5 * gap + 0.01 * rng.standard_normal(100)
    common = dict(coeff_opening=gap, audio_rms=gap, keypoint_motion=1.0, keypoint_corr=1.0, rendered_aperture=gap,
                  frame_motion=1.0, coeff_width=width)
    noise = 0.005 * rng.standard_normal(100)
    follows = TalkingChain(**common, rendered_width=width + noise)
    against = TalkingChain(**common, rendered_width=1.2 - width + noise)
    assert follows.rendered_width_corr > 0.9 and against.rendered_width_corr < -0.9
    row = [r for r in against.rows() if "width" in r["measure"]]
    assert len(row) == 1 and row[0]["value"] == against.rendered_width_corr
    assert np.isnan(TalkingChain(**common).rendered_width_corr)
    assert np.isnan(TalkingChain(**common, rendered_width=np.full(100, np.nan)).rendered_width_corr)


def test_mouth_width_is_the_inner_corner_distance_over_the_eye_corners():
    import torch

    from sadtalker_lib.morphable.render import mouth_opening, mouth_width

    lm = np.zeros((2, 68, 2))
    lm[:, 36], lm[:, 45] = (0.0, 0.0), (4.0, 0.0)  # outer eye corners 4 apart
    lm[:, 60], lm[:, 64] = (1.0, 5.0), (3.0, 5.0)  # inner mouth corners 2 apart
    lm[1, 64] = (3.0, 6.0)  # corner lowered: sqrt(5) apart
    lm[:, 62], lm[:, 66] = (2.0, 4.8), (2.0, 5.2)
    np.testing.assert_allclose(mouth_width(lm), [0.5, np.sqrt(5) / 4])
    np.testing.assert_allclose(mouth_width(torch.as_tensor(lm)).numpy(), [0.5, np.sqrt(5) / 4])
    np.testing.assert_allclose(mouth_opening(lm), [0.1, 0.1])


@pytest.mark.parametrize("late", [0, 3, -2])
def test_talking_chain_reads_how_late_the_rendered_mouth_is(late):
    """The chain's lag row: a rendered aperture that follows the coefficient gap ``late`` frames later reads
    ``late`` (0 = on time); a mouth dlib never found reads NaN, not a lag."""
    from sadtalker_lib.train.facerender_eval import CHAIN_MAX_LAG, TalkingChain

    rng = np.random.default_rng(0)
    gap = np.convolve(rng.random(120), np.ones(4) / 4, "same")
    aperture = np.roll(gap, late) + 0.02 * rng.standard_normal(120)
    aperture[:5] = np.nan  # frames without a face
    chain = TalkingChain(coeff_opening=gap, audio_rms=gap, keypoint_motion=1.0, keypoint_corr=1.0,
                         rendered_aperture=aperture, frame_motion=1.0)
    assert chain.rendered_lag_frames == late
    row = [r for r in chain.rows() if r["measure"].startswith("lag of the best r")]
    assert len(row) == 1 and row[0]["value"] == late and f"+-{CHAIN_MAX_LAG}" in row[0]["measure"]
    blind = TalkingChain(coeff_opening=gap, audio_rms=gap, keypoint_motion=1.0, keypoint_corr=1.0,
                         rendered_aperture=np.full(120, np.nan), frame_motion=1.0)
    assert np.isnan(blind.rendered_lag_frames)
