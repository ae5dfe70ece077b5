"""Crop modes (Preprocesser) and paste-back (paste_pic) against the official run.

fixtures/crop_geometry.npz: align_face + the crop slicing on full_body_1.png (1200 x 800).
fixtures/paste.npz: paste_pic with 2 rendered frames, full and extfull.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sadtalker_lib.face.align import CropInfo, align_face, crop, quad_ry_limit, resize_square
from sadtalker_lib.face.paste import (paste_box, paste_frame, paste_frames, paste_location, render_frame_size,
                                      resize_patch)

pytestmark = pytest.mark.parity


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ---------------------------------------------------------------------------------------------
# crop geometry
# ---------------------------------------------------------------------------------------------
def test_align_face_geometry(fixture):
    f = fixture("crop_geometry")
    geo = align_face(f["input_image_rgb"], f["lm68"], output_size=int(f["output_size"]))
    assert geo.rsize == tuple(f["rsize"])
    assert geo.crop == tuple(int(v) for v in f["crop"])
    d_quad = _maxdiff(geo.quad, f["quad"])
    print(f"crop_geometry quad: {d_quad:.3g}")
    assert d_quad <= 1e-9


@pytest.mark.parametrize("mode, key", [("crop", "crop_face"), ("full", "crop_face"), ("extcrop", "crop_extcrop_still"),
                                       ("extfull", "crop_extcrop_still")])
def test_crop_modes(fixture, mode, key):
    f = fixture("crop_geometry")
    img = f["input_image_rgb"]
    out, info = crop(img, f["lm68"], mode=mode)
    assert out.shape == f[key].shape
    assert _maxdiff(out, f[key]) == 0.0
    # crop_info size is the face square's size in every crop mode (also ext*, as the official code has it)
    assert info.size == tuple(int(v) for v in f["crop_info_size"])
    assert info.crop == tuple(int(v) for v in f["crop"]) and _maxdiff(info.quad, f["quad"]) <= 1e-9
    assert info.as_official() == (info.size, info.crop, info.quad)
    assert np.array_equal(img, f["input_image_rgb"])  # input untouched


def test_source_image_resize(fixture):
    f = fixture("crop_geometry")
    assert _maxdiff(resize_square(f["crop_face"], 256), f["face_256_cv2_resize"]) == 0.0


def test_crop_frame_list_and_resize_mode(fixture):
    f = fixture("crop_geometry")
    img = f["input_image_rgb"]
    frames, info = crop([img, img[:, ::-1].copy()], f["lm68"], mode="crop")  # geometry from the first frame
    assert len(frames) == 2 and frames[0].shape == frames[1].shape == f["crop_face"].shape
    same, info_r = crop(img, None, mode="resize")
    assert same is img and info_r.size == (800, 1200) and info_r.crop is None and info_r.quad is None


def test_crop_bad_inputs(fixture):
    f = fixture("crop_geometry")
    with pytest.raises(ValueError, match="unknown preprocess mode"):
        crop(f["input_image_rgb"], f["lm68"], mode="zoom")
    with pytest.raises(ValueError, match="landmarks"):
        crop(f["input_image_rgb"], None, mode="crop")
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        align_face(f["input_image_rgb"], f["lm68"][:5])


def test_quad_bottom_is_clamped_with_the_width(fixture):
    """Quirk (align.quad_ry_limit): ry is bounded by the image width, not its height."""
    f = fixture("crop_geometry")
    assert quad_ry_limit(800, 1200) == 800
    lm = f["lm68"].copy()
    lm[:, 1] += 150.0 - lm[36:48, 1].mean()  # eyes at y = 150: the ~360 px face square passes a 300 px strip
    img = np.zeros((300, 2000, 3), np.uint8)
    geo = align_face(img, lm)
    assert geo.crop[1] == 0 and geo.crop[3] == 300
    assert 300 < geo.quad[3] <= 2000  # a height bound would have stopped it at 300
    face, info = crop(img, lm, mode="crop")
    assert info.size[1] == int(geo.quad[3]) - int(geo.quad[1])
    assert face.shape[0] < info.size[1]  # the consequence: numpy slicing silently shortens the crop


def test_large_face_is_shrunk():
    """qsize >= 4 * output_size: the working image is shrunk by an integer factor, the geometry with it."""
    lm = np.zeros((68, 2))
    lm[:] = [400, 420]
    lm[36:42] = [350, 380]
    lm[42:48] = [450, 380]
    lm[48] = [365, 470]
    lm[54] = [435, 470]
    small = align_face((800, 800), lm)
    qsize = small.quad[2] - small.quad[0]  # axis-aligned square here (level eyes)
    big = align_face((8000, 8000), lm * 10)
    k = int(np.floor(qsize * 10 / 512 * 0.5))
    assert k >= 2 and big.rsize == (round(8000 / k), round(8000 / k))
    np.testing.assert_allclose(big.crop, np.array(small.crop) * 10 / k, atol=1.0 * 10 / k + 2)
    np.testing.assert_allclose(big.quad, np.array(small.quad) * 10 / k, atol=1.0 * 10 / k + 2)


# ---------------------------------------------------------------------------------------------
# paste-back
# ---------------------------------------------------------------------------------------------
def _info(f) -> CropInfo:
    return CropInfo(
        size=tuple(int(v) for v in f["crop_info_size"]),
        crop=tuple(int(v) for v in f["crop_info_crop"]),
        quad=tuple(float(v) for v in f["crop_info_quad"]),
    )


@pytest.mark.parametrize("extended", [False, True])
def test_paste_box_and_location(fixture, extended):
    f = fixture("paste")
    box = paste_box(_info(f), extended=extended)
    key = "ext_paste_box_oy1_oy2_ox1_ox2" if extended else "paste_box_oy1_oy2_ox1_ox2"
    assert box == tuple(int(v) for v in f[key])
    h, w = f["full_img_bgr"].shape[:2]
    expected_loc = (400, 269) if extended else tuple(int(v) for v in f["location_xy"])  # MANIFEST: ext (400, 269)
    assert paste_location(box, w, h) == expected_loc
    assert render_frame_size(_info(f)) == f["crop_frames_bgr"].shape[1:3][::-1]


@pytest.mark.parametrize("extended", [False, True])
def test_plain_patch_and_hard_paste(fixture, extended):
    f = fixture("paste")
    full = f["full_img_bgr"]
    info = _info(f)
    box = paste_box(info, extended=extended)
    oy1, oy2, ox1, ox2 = box
    ref = f["plain_patch_extcrop_bgr" if extended else "plain_patch_bgr"]
    for i, frame in enumerate(f["crop_frames_bgr"]):
        patch = resize_patch(frame, box)
        d = _maxdiff(patch, ref[i])
        print(f"plain_patch{'_extcrop' if extended else ''}[{i}]: {d:.3g}")
        assert d == 0.0
        hard = paste_frame(frame, full, info, extended=extended, seamless=False)
        expected = full.copy()
        expected[oy1:oy2, ox1:ox2] = ref[i]
        assert _maxdiff(hard, expected) == 0.0
    assert np.array_equal(full, fixture("paste")["full_img_bgr"])  # original untouched


@pytest.mark.parametrize("extended", [False, True])
def test_seamless_paste(fixture, extended):
    f = fixture("paste")
    full = f["full_img_bgr"]
    key = "pasted_seamless_extcrop_bgr" if extended else "pasted_seamless_bgr"
    oy1, oy2, ox1, ox2 = paste_box(_info(f), extended=extended)
    outs = list(paste_frames(f["crop_frames_bgr"], full, _info(f), extended=extended))
    same_cv2 = cv2.__version__ == str(f["cv2_version"])
    for i, out in enumerate(outs):
        ref = f[key][i]
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        print(f"{key}[{i}]: max {diff.max()}, mean {diff.mean():.3g} (cv2 {cv2.__version__} vs {f['cv2_version']})")
        # pixels outside the box are the original's, exactly
        outside = np.ones(full.shape[:2], bool)
        outside[oy1:oy2, ox1:ox2] = False
        assert np.array_equal(out[outside], full[outside])
        if same_cv2:  # the Poisson solver's float rounding differs by CPU (measured: max 1, < 2e-4 mean)
            assert diff.max() <= 2 and diff.mean() < 1e-3
        else:
            assert diff[oy1:oy2, ox1:ox2].mean() < 3.0


def test_paste_bad_inputs(fixture):
    f = fixture("paste")
    full, frame = f["full_img_bgr"], f["crop_frames_bgr"][0]
    with pytest.raises(ValueError, match="resize"):
        paste_frame(frame, full, CropInfo(size=(800, 1200), crop=None, quad=None))
    with pytest.raises(ValueError, match="uint8"):
        paste_frame(frame.astype(np.float32), full, _info(f))
    with pytest.raises(ValueError, match="larger than the picture"):
        paste_frame(frame, full[:200, :200], _info(f), extended=True)


def test_paste_box_scaled_when_crop_was_shrunk(fixture):
    f = fixture("paste")
    info = _info(f)
    half = CropInfo(size=info.size, crop=info.crop, quad=info.quad, rsize=(400, 600))  # crop computed at half size
    with pytest.warns(UserWarning, match="scaling the paste box"):
        box = paste_box(half, full_size=(800, 1200))
    assert box == tuple(2 * v for v in paste_box(info))
