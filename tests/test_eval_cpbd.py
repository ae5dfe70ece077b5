"""CPBD (eval.cpbd) against the reference ``cpbd`` package on real and constructed images."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED
from sadtalker_lib.metrics.cpbd import cpbd, to_gray

CPBD_TOL = 1e-3  # the bound; the measured difference is 0.0 on every image here


@pytest.fixture(scope="module")
def cpbd_package():
    """The ``cpbd`` package. It imports ``scipy.ndimage.imread`` (removed from SciPy long ago) for its command
    line only; a stub attribute is set here, in the tests, so that the package imports."""
    import scipy.ndimage

    if not hasattr(scipy.ndimage, "imread"):
        def _imread_removed(*args, **kwargs):  # pragma: no cover - never called by cpbd.compute
            raise NotImplementedError("scipy.ndimage.imread was removed from SciPy")

        scipy.ndimage.imread = _imread_removed
    return pytest.importorskip("cpbd")


def _skimage_images():
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in ("astronaut", "camera", "coffee")}


def _constructed_images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:192, 0:256]
    checker = (((yy // 16) + (xx // 16)) % 2 * 200 + 20).astype(np.uint8)
    import cv2

    blurred = cv2.GaussianBlur(checker, (0, 0), 2.0)
    noisy = np.clip(checker.astype(float) + rng.normal(0, 20, checker.shape), 0, 255).astype(np.uint8)
    disk = ((yy - 96) ** 2 + (xx - 128) ** 2 < 60**2).astype(np.uint8) * 180 + 40
    return {"checker": checker, "checker_blurred": blurred, "checker_noisy": noisy, "disk": disk,
            "flat": np.full((128, 128), 90, np.uint8)}


@pytest.mark.parametrize("source", ["skimage", "constructed"])
def test_cpbd_matches_package(cpbd_package, source):
    images = _skimage_images() if source == "skimage" else _constructed_images()
    diffs = {}
    for name, image in images.items():
        gray = to_gray(image).astype(np.uint8)  # the package's input: a greyscale array
        ref = cpbd_package.compute(gray)
        ours = cpbd(image)
        diffs[name] = abs(ref - ours)
    print("max |CPBD - cpbd package|:", diffs)
    assert max(diffs.values()) <= CPBD_TOL, diffs


def test_cpbd_orders_sharpness():
    import cv2
    import skimage.data

    img = skimage.data.camera()
    assert cpbd(img) > cpbd(cv2.GaussianBlur(img, (0, 0), 0.7)) > cpbd(cv2.GaussianBlur(img, (0, 0), 1.5)) > 0.05
    assert cpbd(_constructed_images()["flat"]) == 0.0  # no edge block: 0, as the package


@pytest.mark.skipif(not (SHARED / "data" / "clips").is_dir(), reason="../shared/data/clips not present")
def test_cpbd_matches_package_on_shared_clip_frames(cpbd_package):
    from sadtalker_lib.metrics.video_io import load_clip

    diffs = {}
    for path in sorted((SHARED / "data" / "clips").glob("*.mp4")):
        clip = load_clip(path, max_frames=12, size=256)  # the evaluation's 256 px frames
        for t in (0, 11):
            ref = cpbd_package.compute(to_gray(clip.frames[t]).astype(np.uint8))
            diffs[f"{path.name}:{t}"] = abs(ref - cpbd(clip.frames[t]))
    print("max |CPBD - cpbd package| on shared frames:", max(diffs.values()))
    assert max(diffs.values()) <= CPBD_TOL, diffs


def test_cpbd_bad_input():
    with pytest.raises(ValueError, match="at least 64x64"):
        cpbd(np.zeros((32, 200), np.uint8))
    with pytest.raises(ValueError, match="greyscale"):
        cpbd(np.zeros((64, 64, 2), np.uint8))
