"""Face detection (dlib, offline) and image loading: a real portrait, several faces, no face, odd formats."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from sadtalker_lib.face import (
    DetectorUnavailableError,
    DlibDetector,
    FacexlibDetector,
    ImageLoadError,
    MultipleFacesWarning,
    NoFaceError,
    detect_landmarks,
    load_image,
    prepare_portrait,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # 512 x 512 RGB portrait shipped with scikit-image


@pytest.fixture(scope="module")
def detector() -> DlibDetector:
    return DlibDetector()


def _check_plausible(lm: np.ndarray, w: int, h: int) -> None:
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert (lm[:, 0] >= 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] >= 0).all() and (lm[:, 1] < h).all()
    eyes_y, mouth_y, nose_y = lm[36:48, 1].mean(), lm[48:68, 1].mean(), lm[30, 1]
    assert eyes_y < nose_y < mouth_y  # eyes above the nose tip above the mouth
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # subject's right eye (image left) first
    assert lm[0, 0] < lm[16, 0] and lm[8, 1] > mouth_y  # jaw from left to right, chin below the mouth


def test_astronaut_one_face(detector, astronaut):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultipleFacesWarning)
        face = detector.detect(astronaut)
    assert face.num_faces == 1
    _check_plausible(face.landmarks, 512, 512)
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 50 < y1 < y2 < 200  # the face is up left of centre
    inside = (face.landmarks[:, 0] > x1 - 20) & (face.landmarks[:, 0] < x2 + 20)
    assert inside.mean() > 0.9
    assert np.array_equal(detect_landmarks(astronaut), face.landmarks)  # the shared default is dlib too


def test_no_face_raises_clear_error(detector):
    grey = np.full((256, 256, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        detector.detect(grey)
    assert issubclass(NoFaceError, ValueError)
    assert detector.detect_all(grey) == []


def test_several_faces_pick_the_largest_with_warning(detector, astronaut):
    head = astronaut[:300, 80:380]  # face about 90 px
    big = cv2.resize(head, (450, 450))  # the same face, 1.5x larger
    canvas = np.full((450, 750, 3), 200, np.uint8)
    canvas[:300, :300] = head
    canvas[:, 300:] = big
    with pytest.warns(MultipleFacesWarning, match="using the largest"):
        face = detector.detect(canvas)
    assert face.num_faces == 2
    assert face.box[0] > 300  # the larger face is the one on the right
    _check_plausible(face.landmarks, 750, 450)


@pytest.mark.filterwarnings("error::sadtalker_lib.face.detect.MultipleFacesWarning")
def test_huge_image_is_downscaled_for_detection(detector, astronaut):
    small = detector.detect(astronaut)
    huge = cv2.resize(astronaut, (2560, 2560), interpolation=cv2.INTER_CUBIC)
    face = detector.detect(huge)
    _check_plausible(face.landmarks, 2560, 2560)
    # landmarks come back in the huge image's pixels
    assert np.abs(face.landmarks / 5.0 - small.landmarks).mean() < 3.0


@pytest.mark.filterwarnings("error::sadtalker_lib.face.detect.MultipleFacesWarning")  # no helmet false positive
@pytest.mark.parametrize("kind", ["rgba", "grey", "grey16", "rgb16", "palette"])
def test_detect_on_odd_formats(detector, astronaut, tmp_path, kind):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    if kind == "rgba":
        im = Image.fromarray(np.dstack([astronaut, np.full((512, 512), 255, np.uint8)]), "RGBA")
    elif kind == "grey":
        im = Image.fromarray(grey, "L")
    elif kind == "grey16":
        im = Image.fromarray((grey.astype(np.uint16) * 257))
    elif kind == "palette":
        im = Image.fromarray(astronaut).quantize(colors=64)
    path = tmp_path / f"{kind}.png"
    if kind == "rgb16":  # 16 bits per channel (Pillow reads it as 8-bit RGB)
        cv2.imwrite(str(path), astronaut[:, :, ::-1].astype(np.uint16) * 257)
    else:
        im.save(path)
    img = load_image(path)
    assert img.dtype == np.uint8 and img.shape == (512, 512, 3)
    if kind in ("grey", "grey16"):
        assert np.array_equal(img[:, :, 0], grey) and np.array_equal(img[:, :, 0], img[:, :, 2])
    if kind in ("rgba", "rgb16"):
        assert np.array_equal(img, astronaut)
    _check_plausible(detector.landmarks(path), 512, 512)


def test_load_image_arrays(astronaut):
    rgba = np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # fully transparent corner -> background colour
    out = load_image(rgba, background=(0, 255, 0))
    assert np.array_equal(out[:10, :10], np.broadcast_to([0, 255, 0], (10, 10, 3)))
    assert np.array_equal(out[20:], astronaut[20:])
    grey = astronaut[:, :, 1]
    assert np.array_equal(load_image(grey), np.repeat(grey[:, :, None], 3, 2))
    assert np.array_equal(load_image(grey[:, :, None]), np.repeat(grey[:, :, None], 3, 2))
    assert np.array_equal(load_image(astronaut.astype(np.uint16) * 257), astronaut)
    assert np.array_equal(load_image(astronaut / 255.0), astronaut)
    assert load_image(np.ones((64, 64), bool)).max() == 255


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((32, 32, 3), np.uint8), "at least 64"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((100, 100, 5), np.uint8), "shape"),
        (np.full((100, 100, 3), 2.0), r"\[0, 1\]"),
        (np.full((100, 100, 3), np.nan), "NaN"),
        (np.full((100, 100), -3, np.int32), "neither 8- nor 16-bit"),
    ],
)
def test_load_image_bad_arrays(bad, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(bad)


def test_load_image_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image\n" * 10)
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(junk)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageLoadError):
        load_image(truncated)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((40, 300, 3), np.uint8)).save(tiny)
    with pytest.raises(ImageLoadError, match="at least 64"):
        load_image(tiny)
    with pytest.raises(TypeError):
        load_image(12)
    assert issubclass(ImageLoadError, ValueError)


def test_facexlib_detector_absent_is_clear(tmp_path):
    with pytest.raises(DetectorUnavailableError, match="facexlib"):
        FacexlibDetector(tmp_path)


@pytest.mark.parametrize("mode", ["crop", "extcrop", "resize"])
def test_prepare_portrait(astronaut, mode):
    p = prepare_portrait(astronaut, mode=mode)
    assert p.source.shape == (256, 256, 3) and p.aligned.image.shape == (224, 224, 3)
    _check_plausible(p.landmarks, 256, 256)
    w0, h0, s, tx, ty = p.aligned.trans_params
    assert (w0, h0) == (256, 256) and 0.3 < s < 5 and 0 < tx < 256 and 0 < ty < 256
    if mode == "resize":
        assert p.crop_info.crop is None and p.crop_info.size == (512, 512)
    else:
        assert p.crop_info.crop is not None and p.crop_info.size[0] > 100
    # the eyes of the aligned crop sit where the standard face puts them (y up in aligned.landmarks)
    eyes = p.aligned.landmarks[36:48].mean(0)
    assert abs(eyes[0] - 112) < 10 and 125 < eyes[1] < 160


def test_prepare_portrait_no_face():
    with pytest.raises(NoFaceError):
        prepare_portrait(np.full((256, 256, 3), 90, np.uint8), mode="crop")


def test_prepare_portrait_falls_back_to_standard_landmarks(detector, astronaut):
    """Face found on the picture but missed on the 256 source: the official 5-point fallback, with a warning."""

    class FirstCallOnly:
        calls = 0

        def landmarks(self, image):
            self.calls += 1
            if self.calls > 1:
                raise NoFaceError("no face found in the image")
            return detector.landmarks(image)

    with pytest.warns(UserWarning, match="standard 5 landmarks"):
        p = prepare_portrait(astronaut, mode="crop", detector=FirstCallOnly())
    assert p.landmarks is None and p.aligned.landmarks.shape == (5, 2) and p.aligned.image.shape == (224, 224, 3)
