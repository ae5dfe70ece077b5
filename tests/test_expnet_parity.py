"""ExpNet (official audio2exp SimpleWrapperV2) parity with fixtures/audio2exp.npz, both checkpoint routes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.audio2coeff import EXPNET_CHUNK_FRAMES, predict_expression
from sadtalker_lib.official.io import load_official, official_state_dict, save_official_pth
from sadtalker_lib.models.expnet import ExpNet, ExpNetConfig
from sadtalker_lib.official import to_our_key

ROUTES = {
    "safetensors": "SadTalker_V0.0.2_256.safetensors",
    "pth": "auido2exp_00300-model.pth",
}


def test_expnet_shapes_and_frame_independence():
    torch.manual_seed(0)
    net = ExpNet(ExpNetConfig()).eval()
    mel = torch.randn(2, 7, 1, 80, 16)
    ref = torch.randn(2, 7, 64)
    blink = torch.rand(2, 7, 1)
    with torch.no_grad():
        out = net(mel, ref, blink)
        assert out.shape == (2, 7, 64)
        # frames are independent: one frame alone gives the same result (chunking is only a memory choice)
        one = net(mel[1:, 3:4], ref[1:, 3:4], blink[1:, 3:4])
    assert torch.allclose(out[1:, 3:4], one, atol=1e-5)
    assert net.audio_encoder(mel[0]).shape == (7, 512, 1, 1)


@pytest.mark.parity
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_expnet_matches_official(reference_checkpoints, fixture, route):
    fx = fixture("audio2exp")
    assert int(fx["chunk"]) == EXPNET_CHUNK_FRAMES
    source = reference_checkpoints / ROUTES[route]
    net = load_official(ExpNet(), "audio2exp", source).eval()
    # every official key is consumed (load_official is strict) and nothing else exists
    assert {to_our_key("audio2exp", k) for k in official_state_dict("audio2exp", source)} == set(net.state_dict())
    out = predict_expression(net, torch.from_numpy(fx["indiv_mels"]), torch.from_numpy(fx["ref"]),
                             torch.from_numpy(fx["ratio_gt"]))
    diff = np.abs(out.numpy() - fx["exp_coeff_pred"]).max()
    print(f"[{route}] exp_coeff_pred max abs diff {diff:.3g}")
    assert out.shape == (1, 75, 64)
    assert diff <= 1e-5


@pytest.mark.parity
def test_expnet_official_pth_round_trip(reference_checkpoints, fixture, tmp_path):
    fx = fixture("audio2exp")
    net = load_official(ExpNet(), "audio2exp", reference_checkpoints / ROUTES["pth"]).eval()
    path = save_official_pth({"audio2exp": net}, tmp_path / "auido2exp_00300-model.pth")
    again = load_official(ExpNet(), "audio2exp", path).eval()
    for (k, v), (k2, v2) in zip(net.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    mel, ref, ratio = (torch.from_numpy(fx[k][:, :12]) for k in ("indiv_mels", "ref", "ratio_gt"))
    assert torch.equal(predict_expression(net, mel, ref, ratio), predict_expression(again, mel, ref, ratio))
