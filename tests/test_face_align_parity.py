"""align_img (Deep3DFaceRecon 5-point POS alignment) against the official run (fixtures/align.npz)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED
from sadtalker_lib.face.align import (
    LM3D_5_STANDARD,
    align_img,
    extract_5p,
    flip_y,
    pos_fit,
    standard_landmarks_5,
)

pytestmark = pytest.mark.parity


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_standard_landmarks_constant_matches_official_load_lm3d(fixture):
    f = fixture("align")
    assert LM3D_5_STANDARD.dtype == np.float32
    assert _maxdiff(LM3D_5_STANDARD, f["lm3d_std_5x3"]) == 0.0
    # and it is the 5-point reduction of the 68 mean landmarks, computed in float32 as the official code does
    assert _maxdiff(extract_5p(f["lm3d_all_68x3"]), f["lm3d_std_5x3"]) == 0.0


@pytest.mark.skipif(
    not (SHARED / "data" / "bfm" / "similarity_Lm3D_all.mat").is_file(), reason="similarity_Lm3D_all.mat not available"
)
def test_standard_landmarks_constant_matches_mat_file():
    from scipy.io import loadmat

    lm = loadmat(SHARED / "data" / "bfm" / "similarity_Lm3D_all.mat")["lm"]
    assert lm.shape == (68, 3)
    assert _maxdiff(extract_5p(lm), LM3D_5_STANDARD) <= 1e-7


def test_extract_5p_and_y_flip(fixture):
    f = fixture("align")
    assert _maxdiff(flip_y(f["lm68_image_coords"], 256), f["lm68_yflipped"]) == 0.0
    # float32 rounding
    assert _maxdiff(flip_y(flip_y(f["lm68_image_coords"], 256), 256), f["lm68_image_coords"]) <= 1e-4
    lm5 = extract_5p(f["lm68_yflipped"])
    assert lm5.dtype == np.float32 and _maxdiff(lm5, f["lm5_from_68"]) == 0.0


@pytest.mark.parametrize("suffix", ["", "_5pt_input"])
def test_align_img_parity(fixture, suffix):
    f = fixture("align")
    lm = f["lm68_yflipped"] if suffix == "" else f["lm5_from_68"]
    out = align_img(f["image_256_rgb"], lm, target_size=int(f["target_size"]),
                    rescale_factor=float(f["rescale_factor"]))
    d_params = _maxdiff(out.trans_params, f["trans_params" + suffix])
    d_img = _maxdiff(out.image, f["cropped_224" + suffix])
    d_lm = _maxdiff(out.landmarks, f["lm_new" + suffix])
    print(f"align{suffix}: trans_params {d_params:.3g}, cropped_224 {d_img:.3g}, lm_new {d_lm:.3g}")
    assert out.image.shape == (224, 224, 3) and out.image.dtype == np.uint8
    assert d_params <= 1e-9
    assert d_img == 0.0
    assert d_lm <= 1e-9


def test_pos_fit_recovers_a_known_projection():
    rng = np.random.default_rng(0)
    s_true, t_true = 87.5, np.array([130.0, 95.0])
    c, si = np.cos(0.2), np.sin(0.2)
    rot = np.array([[c, 0, si], [0, 1, 0], [-si, 0, c]])  # yaw
    lm5 = s_true * (LM3D_5_STANDARD.astype(np.float64) @ rot.T)[:, :2] + t_true
    t, s = pos_fit(lm5 + rng.normal(0, 1e-9, lm5.shape))
    assert np.allclose(t, t_true, atol=1e-6) and abs(s - s_true) < 1e-6


def test_align_img_centres_the_standard_face():
    """Landmarks placed exactly at the standard face land where every aligned face lands."""
    img = np.full((300, 400, 3), 128, np.uint8)
    lm5 = 120.0 * LM3D_5_STANDARD[:, :2].astype(np.float64) + [200.0, 150.0]  # y up, scale 120
    out = align_img(img, lm5)
    assert abs(out.trans_params[2] - 102.0 / 120.0) < 1e-9
    expected = 102.0 * LM3D_5_STANDARD[:, :2] + 112.0  # target_size / 2
    assert np.abs(out.landmarks - expected).max() < 1.0  # up to the integer crop corner


def test_standard_landmarks_fallback_shape():
    lm = standard_landmarks_5(256, 256)
    assert lm.shape == (5, 2) and (lm > 0).all() and (lm < 256).all()


@pytest.mark.parametrize(
    "lm, match",
    [(np.zeros((10, 2)), "landmarks"), (np.zeros((68, 3)), "landmarks"), (np.full((5, 2), np.nan), "NaN"),
     (np.zeros((5, 2)), "degenerate")],
)
def test_align_img_bad_landmarks(lm, match):
    with pytest.raises(ValueError, match=match):
        align_img(np.zeros((256, 256, 3), np.uint8), lm)
