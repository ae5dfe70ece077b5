"""PoseVAE (official Audio2Pose) + Audio2Coeff glue parity with fixtures/audio2pose.npz, both checkpoint routes.

Fixture note: in audio2pose.npz the style-0 arrays ``pose_motion_pred`` and ``pose_pred_raw`` are bit-equal to
``pose_pred_raw_style45`` (drawn with other noise), and savgol(13, 2) of them does NOT give the stored
``coeff_70_after_savgol``. They hold the style-45 run (the fixture script kept the second run's tensors).
The style-0 run is checked through ``coeff_70_after_savgol``, which our style-0 prediction matches, and the
stored ``pose_motion_pred`` / ``pose_pred_raw`` are compared with our style-45 run.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib import audio2coeff as a2c
from sadtalker_lib.coeffs import EXP, MOTION_DIM, PITCH, POSE
from sadtalker_lib.audio2coeff import pose_chunk_plan, pose_savgol_window
from sadtalker_lib.official.io import load_official, official_state_dict
from sadtalker_lib.models.expnet import ExpNet
from sadtalker_lib.models.posevae import PoseVAE, PoseVAEConfig
from sadtalker_lib.official import to_our_key

ROUTES = {
    "safetensors": ("SadTalker_V0.0.2_256.safetensors", "SadTalker_V0.0.2_256.safetensors"),
    "pth": ("auido2pose_00140-model.pth", "auido2exp_00300-model.pth"),
}
TOL = 1e-5


def test_chunk_plan_and_savgol_window():
    # 75 frames: the reference frame + 74 windows = 2 full chunks + the last 32 windows keeping 10 outputs
    assert pose_chunk_plan(74) == [(0, 32, 32), (32, 64, 32), (42, 74, 10)]
    assert pose_chunk_plan(64) == [(0, 32, 32), (32, 64, 32)]
    assert pose_chunk_plan(9) == [(0, 9, 9)] and pose_chunk_plan(0) == []
    assert [pose_savgol_window(t) for t in (1, 2, 3, 8, 12, 13, 100)] == [1, 1, 3, 7, 11, 13, 13]


def test_posevae_shapes_and_short_clips():
    torch.manual_seed(0)
    net = PoseVAE(PoseVAEConfig()).eval()
    with torch.no_grad():
        mel = torch.randn(2, 32, 1, 80, 16)
        out = net(mel, torch.randn(2, 6), torch.tensor([0, 45]), torch.randn(2, 64))
        assert out.shape == (2, 32, 6)
        mu, logvar = net.encoder(torch.randn(2, 32, 6), torch.randn(2, 6), torch.randn(2, 32, 512),
                                 torch.tensor([1, 2]))
        assert mu.shape == logvar.shape == (2, 64)
        assert torch.equal(mu, logvar)  # official quirk: logvar comes from the means layer
        assert net.discriminator(torch.randn(2, 32, 6)).shape == (2, 8)
    ref = torch.randn(1, 70)
    for t in (1, 2, 10, 33, 40):  # no chunk, padded short chunk, exactly one chunk, overlapping last chunk
        g = torch.Generator().manual_seed(t)
        pred = a2c.predict_pose(net, torch.randn(1, t, 1, 80, 16), ref, style=3, generator=g)
        assert pred.pose.shape == pred.pose_raw.shape == pred.motion.shape == (1, t, 6)
        assert torch.equal(pred.motion[:, 0], torch.zeros(1, 6))  # the reference frame does not move
        assert torch.allclose(pred.pose_raw, ref[:, None, 64:] + pred.motion)
        assert pred.z.shape == (len(pose_chunk_plan(t - 1)), 1, 64)
    with pytest.raises(ValueError, match="pose_style"):
        a2c.predict_pose(net, torch.randn(1, 5, 1, 80, 16), ref, style=46)
    with pytest.raises(ValueError, match="z must be"):
        a2c.predict_pose(net, torch.randn(1, 40, 1, 80, 16), ref, z=torch.randn(1, 1, 64))


@pytest.fixture(scope="module", params=sorted(ROUTES))
def nets(request, reference_checkpoints):
    pose_file, exp_file = ROUTES[request.param]
    source = reference_checkpoints / pose_file
    posevae = load_official(PoseVAE(), "audio2pose", source).eval()
    keys = {to_our_key("audio2pose", k) for k in official_state_dict("audio2pose", source)}
    expnet = load_official(ExpNet(), "audio2exp", reference_checkpoints / exp_file).eval()
    return request.param, posevae, expnet, keys


@pytest.mark.parity
def test_posevae_matches_official(nets, fixture):
    route, posevae, _, keys = nets
    fx = fixture("audio2pose")
    # every official key (audio encoder, CVAE encoder + decoder, netD_motion) maps onto our module
    assert keys == set(posevae.state_dict()) and len(keys) == 419
    mels, ref = torch.from_numpy(fx["indiv_mels"]), torch.from_numpy(fx["ref"])

    p0 = a2c.predict_pose(posevae, mels, ref, int(fx["pose_style"]), z=torch.from_numpy(fx["z_noise"]))
    exp = torch.from_numpy(fixture("audio2exp")["exp_coeff_pred"])
    coeffs = torch.cat([exp, p0.pose], dim=-1)[0].numpy()
    d_coeff = np.abs(coeffs - fx["coeff_70_after_savgol"]).max()

    p45 = a2c.predict_pose(posevae, mels, ref, int(fx["pose_style_45"]), z=torch.from_numpy(fx["z_noise_style45"]))
    d45 = np.abs(p45.pose_raw.numpy() - fx["pose_pred_raw_style45"]).max()
    # fixture quirk (module docstring): the stored "style 0" motion / raw pose are the style-45 run's
    assert np.array_equal(fx["pose_pred_raw"], fx["pose_pred_raw_style45"])
    d_motion = np.abs(p45.motion.numpy() - fx["pose_motion_pred"]).max()
    d_raw = np.abs(p45.pose_raw.numpy() - fx["pose_pred_raw"]).max()
    print(f"[{route}] coeff_70_after_savgol {d_coeff:.3g}, pose_pred_raw_style45 {d45:.3g}, "
          f"pose_motion_pred {d_motion:.3g}, pose_pred_raw {d_raw:.3g}")
    assert max(d_coeff, d45, d_motion, d_raw) <= TOL


@pytest.mark.parity
def test_audio_to_coefficients_with_seeded_noise(nets, fixture):
    """The whole glue with noise drawn from torch.Generator seeds (the official torch.manual_seed values)."""
    route, posevae, expnet, _ = nets
    fx, fe = fixture("audio2pose"), fixture("audio2exp")
    g = torch.Generator().manual_seed(int(fx["torch_manual_seed"]))
    assert torch.equal(a2c.draw_pose_noise(75, generator=g), torch.from_numpy(fx["z_noise"]))
    mels = torch.from_numpy(fx["indiv_mels"])
    ref70 = torch.from_numpy(fx["ref"][:, 0])  # [1, 70]: repeated over time like get_data
    out = a2c.audio_to_coefficients(expnet, posevae, mels, ref70, torch.from_numpy(fe["ratio_gt"]), pose_style=0,
                                    generator=torch.Generator().manual_seed(int(fx["torch_manual_seed"])))
    assert out.coeffs.shape == (75, 70) and out.coeffs.dtype == np.float32
    assert out.exp.shape == (1, 75, 64) and out.pose.pose.shape == (1, 75, 6)
    d = np.abs(out.coeffs - fx["coeff_70_after_savgol"]).max()
    print(f"[{route}] audio_to_coefficients coeff_70_after_savgol {d:.3g}")
    assert d <= TOL
    assert torch.equal(out.coeffs_batch[0], torch.from_numpy(out.coeffs))


def test_reference_helpers():
    ref = torch.arange(73, dtype=torch.float32)
    r = a2c.reference_coefficients(ref, 5)
    assert r.shape == (1, 5, MOTION_DIM) and torch.equal(r[0, 4], ref[:MOTION_DIM])  # crop params dropped, repeated
    with pytest.raises(ValueError, match="frames"):
        a2c.reference_coefficients(torch.zeros(1, 4, 70), 5)
    seq = np.arange(3)[:, None] * np.ones((1, 6))
    assert a2c.tile_sequence(seq, 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]  # official: whole copies, then the start
    coeffs = np.zeros((4, 70), dtype=np.float32)
    ref_video = np.zeros((2, 73))
    ref_video[:, POSE] = [[1.0] * 6, [3.0] * 6]
    out = a2c.add_reference_pose(coeffs, ref_video)  # adds ref_pose[t] - ref_pose[0] to the pose columns
    assert out[:, PITCH].tolist() == [0, 2, 0, 2] and not out[:, EXP].any()
