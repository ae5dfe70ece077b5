"""3DMM coefficient regressor (official ReconNetWrapper resnet50, net_recon) parity with fixtures/face3d_recon.npz,
from both official routes: epoch_20.pth and the face_3drecon section of SadTalker_V0.0.2_256.safetensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sadtalker_lib.coeffs import CROP
from sadtalker_lib.official.io import load_official, official_state_dict
from sadtalker_lib.models.regressor import (HEAD_SIZES, CoefficientRegressor, FaceCoefficients, RegressorConfig,
                                            split_coeffs)
from sadtalker_lib.morphable.model import coeffs_73
from sadtalker_lib.official import to_our_key

ROUTES = {"safetensors": "SadTalker_V0.0.2_256.safetensors", "pth": "epoch_20.pth"}
PARTS = ("id", "exp", "tex", "angle", "gamma", "trans")


def test_layout_and_split():
    assert [n for _, n in HEAD_SIZES] == [80, 64, 80, 3, 27, 2, 1]
    c = torch.arange(2 * 257, dtype=torch.float32).reshape(2, 257)
    parts = split_coeffs(c)
    assert isinstance(parts, FaceCoefficients)
    sizes = {k: v.shape[-1] for k, v in parts.as_dict().items()}
    assert sizes == {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    assert torch.equal(torch.cat([parts.as_dict()[k] for k in PARTS], dim=-1), c)  # contiguous, in order
    assert parts.exp[0, 0] == 80 and parts.trans[0, 0] == 254
    with pytest.raises(ValueError, match="257"):
        split_coeffs(torch.zeros(1, 256))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_small_backbones(backbone):
    torch.manual_seed(0)
    net = CoefficientRegressor(RegressorConfig(backbone=backbone, width=8)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 257) and torch.isfinite(out).all()
    # BasicBlock stages keep torchvision names; layer1 needs no projection shortcut
    keys = set(net.state_dict())
    assert "backbone.layer2.0.downsample.0.weight" in keys and "backbone.layer1.0.conv3.weight" not in keys
    assert not any(k.startswith("backbone.layer1.0.downsample") for k in keys)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown backbone"):
        RegressorConfig(backbone="vgg16")
    net = CoefficientRegressor(RegressorConfig(backbone="resnet18", width=8))
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(1, 1, 64, 64))


@pytest.mark.parity
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_regressor_matches_official(reference_checkpoints, fixture, route):
    fx = fixture("face3d_recon")
    source = reference_checkpoints / ROUTES[route]
    net = load_official(CoefficientRegressor(), "face_3drecon", source).eval()
    assert {to_our_key("face_3drecon", k) for k in official_state_dict("face_3drecon", source)} == set(net.state_dict())
    with torch.no_grad():
        coeffs = net(torch.from_numpy(fx["input_224"]))
    parts = split_coeffs(coeffs).as_dict()
    diffs = {"coeffs_257": float(np.abs(coeffs.numpy() - fx["coeffs_257"]).max())}
    diffs.update({k: float(np.abs(parts[k].numpy() - fx[k]).max()) for k in PARTS})

    # the source .mat row: [exp 64 | angle 3 | trans 3 | trans_params[2:5] = (s, tx, ty)] (CropAndExtract.generate);
    # the crop params come from align_img on the same image (fixtures/align.npz).
    crop = torch.from_numpy(fixture("align")["trans_params"][2:5].astype(np.float32))[None]
    c73 = coeffs_73(coeffs, crop)
    diffs["coeff_3dmm_73"] = float(np.abs(c73.numpy() - fx["coeff_3dmm_73"]).max())
    print(f"[{route}] face_3drecon max abs diffs:", {k: f"{v:.2g}" for k, v in diffs.items()})
    assert np.array_equal(fx["full_3dmm_saved"], fx["coeffs_257"])  # full_3dmm is the raw 257 output
    assert np.array_equal(c73[:, CROP].numpy(), fx["coeff_3dmm_73"][:, CROP])
    for k, v in diffs.items():
        assert v <= 1e-5, (k, v)
