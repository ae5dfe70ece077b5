"""The fast seamless paste (face.paste.SeamlessPaste, solver="fast") against cv2.seamlessClone (solver="opencv",
the official paste_pic): within 1 grey level on real images, every box orientation and every fake-boundary case of
the padded DST grid; the solver itself against the discrete Poisson equation; errors on bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from sadtalker_lib.face.align import CropInfo
from sadtalker_lib.face.paste import SeamlessPaste, paste_box, paste_frame, paste_frames


def _info(x1: int, y1: int, w: int, h: int, pad: int = 10) -> CropInfo:
    """A crop whose face square (the full-mode paste box) is the w x h box at (x1, y1); extfull pastes the crop."""
    crop = (x1 - pad, y1 - pad, x1 + w + pad, y1 + h + pad)
    return CropInfo(size=(w, h), crop=crop, quad=(pad + 0.4, pad + 0.7, pad + w + 0.2, pad + h + 0.9))


def _frames(n: int, size=(256, 256)) -> list[np.ndarray]:
    """Rendered-like frames: a real face (skimage astronaut), shifted and brightened per frame."""
    face = cv2.resize(skimage.data.astronaut()[0:220, 150:330], size)
    return [np.clip(np.roll(face, 3 * i, axis=1).astype(np.int16) + 5 * i, 0, 255).astype(np.uint8) for i in range(n)]


def _maxdiff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# boxes covering both orientations, even / odd sizes, a box at the picture's right edge, and every padding case of the
# DST grid (unknowns n x m = box - 4: n + 1 and m + 1 5-smooth or not, e.g. 183 -> 179 (180 = 2^2 3^2 5) unpadded,
# 184 -> 180 (181 prime) padded; extfull adds 20 px: 203 -> 199 unpadded, 204 -> 200 (201 = 3 x 67) padded)
BOXES = [(133, 14, 184, 185), (120, 30, 181, 182), (100, 40, 203, 170), (90, 60, 150, 211), (330, 100, 182, 150),
         (60, 40, 183, 183), (60, 40, 183, 184), (60, 40, 184, 183)]


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("extended", [False, True])
def test_fast_paste_matches_seamless_clone(box, extended):
    full = skimage.data.astronaut()  # 512 x 512 RGB
    info = _info(*box)
    fast = SeamlessPaste(full, info, extended=extended)
    oy1, oy2, ox1, ox2 = paste_box(info, extended)
    for frame in _frames(2, size=(ox2 - ox1 + 7, oy2 - oy1 - 5)):  # any frame size: it is stretched to the box
        ref = paste_frame(frame, full, info, extended=extended, solver="opencv")
        out = fast(frame)
        hard = paste_frame(frame, full, info, extended=extended, seamless=False)
        assert out.shape == full.shape and out.dtype == np.uint8
        assert _maxdiff(out, ref) <= 1
        assert (out != ref).mean() < 0.02  # only truncation flips of the float rounding
        assert _maxdiff(hard, ref) > 10  # the blend does change the picture (a hard paste is far from it)
    assert np.array_equal(full, skimage.data.astronaut())  # the original is untouched


def test_boxes_cover_every_padding_case():
    """The parity test above runs the fake-boundary correction on rows only, columns only, both and neither."""
    full = skimage.data.astronaut()
    cases = set()
    for box in BOXES:
        for extended in (False, True):
            fast = SeamlessPaste(full, _info(*box), extended=extended)
            cases.add(tuple(big > small for big, small in zip(fast.padded_shape, fast.shape)))
    assert cases == {(False, False), (False, True), (True, False), (True, True)}


# the crop the real preprocessing (dlib landmarks, align_face) gives for skimage's astronaut at 512 px and at 1024 px
# (the picture upscaled; benchmarks/paste_back.py computes them)
ASTRONAUT_CROPS = {
    512: CropInfo(size=(184, 185), crop=(115, 0, 334, 216), quad=(18.129, 14.854, 202.471, 199.196), rsize=(512, 512)),
    1024: CropInfo(size=(364, 365), crop=(232, 0, 668, 431), quad=(36.442, 31.592, 400.908, 396.058),
                   rsize=(1024, 1024)),
}


@pytest.mark.parametrize("size", [512, 1024])
@pytest.mark.parametrize("mode", ["full", "extfull"])
def test_fast_paste_real_portrait_sizes(size, mode):
    img = skimage.data.astronaut()
    full = img if size == 512 else cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    info = ASTRONAUT_CROPS[size]
    face = cv2.resize(img[40:260, 140:360], (256, 256))  # a rendered-like frame: the face, brightened, shifted
    frame = np.clip(np.roll(face, 4, axis=0).astype(np.int16) + 12, 0, 255).astype(np.uint8)
    ref = paste_frame(frame, full, info, extended=mode == "extfull", solver="opencv")
    out = paste_frame(frame, full, info, extended=mode == "extfull", solver="fast")
    assert _maxdiff(out, ref) <= 1
    assert (out != ref).mean() < 0.01
    assert _maxdiff(out, full) > 10  # something was pasted


@pytest.mark.parametrize("box", [(60, 40, 183, 183), (60, 40, 183, 184), (60, 40, 184, 183), (60, 40, 184, 185)])
def test_correction_solves_the_poisson_equation(box):
    """The solver alone (float64): for a right-hand side on the band, A corr = r with zero Dirichlet values around the
    n x m interior, whether the DST grid was padded (fake boundary) or not."""
    sp = SeamlessPaste(skimage.data.astronaut(), _info(*box), dtype=np.float64)
    (n, m), k = sp.shape, 5
    rng = np.random.default_rng(0)
    rows, cols = rng.normal(size=(3, k, m)) * 50, rng.normal(size=(3, n - k, k)) * 50
    corr = np.array(sp._correction(rows, cols))  # [3, n, m]
    r = np.zeros((3, n, m))
    r[:, [0, 1, 2, n - 2, n - 1]] = rows
    r[:, 3:n - 2][:, :, [0, 1, 2, m - 2, m - 1]] = cols
    padded = np.pad(corr, ((0, 0), (1, 1), (1, 1)))
    lap = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:] - 4 * corr
    assert np.abs(lap - r).max() < 1e-8 * np.abs(r).max()
    assert np.abs(corr).max() > 1.0  # not a trivial solution


def test_paste_frame_fast_cache_and_stream():
    full = skimage.data.astronaut()
    info = _info(*BOXES[0])
    frames = _frames(3)
    streamed = list(paste_frames(frames, full, info, solver="fast", batch=2))  # a batch of 2, then 1
    single = [paste_frame(f, full, info, solver="fast") for f in frames]
    assert len(streamed) == 3
    for a, b, f in zip(streamed, single, frames):
        assert np.array_equal(a, b)  # solving frames together changes nothing
        assert _maxdiff(a, paste_frame(f, full, info, solver="opencv")) <= 1
    # the picture changed in place inside the region: the cached precomputation must not be reused
    edited = full.copy()
    before = paste_frame(frames[0], edited, info, solver="fast")
    edited[100:200, 200:300] = 255 - edited[100:200, 200:300]
    after = paste_frame(frames[0], edited, info, solver="fast")
    assert _maxdiff(after, paste_frame(frames[0], edited, info, solver="opencv")) <= 1
    assert _maxdiff(after, before) > 10


def test_fast_paste_bad_inputs():
    full = skimage.data.astronaut()
    info = _info(*BOXES[0])
    frame = _frames(1)[0]
    with pytest.raises(ValueError, match="solver"):
        paste_frame(frame, full, info, solver="poisson")
    with pytest.raises(ValueError, match="batch"):
        next(paste_frames([frame], full, info, solver="fast", batch=0))
    with pytest.raises(ValueError, match="uint8"):
        SeamlessPaste(full, info).paste_batch([frame, frame.astype(np.float64)])
    with pytest.raises(ValueError, match="uint8"):
        paste_frame(frame.astype(np.float32), full, info, solver="fast")
    with pytest.raises(ValueError, match="uint8"):
        SeamlessPaste(full[..., :2], info)
    with pytest.raises(ValueError, match="uint8"):
        SeamlessPaste(full, info)(frame[..., 0])
    with pytest.raises(ValueError, match="resize"):
        SeamlessPaste(full, CropInfo(size=(512, 512), crop=None, quad=None))
    with pytest.raises(ValueError, match="too small"):
        SeamlessPaste(full, _info(200, 200, 6, 30))
    with pytest.raises(ValueError, match="larger than the picture"):
        SeamlessPaste(full[:150, :150], info)
    with pytest.raises(ValueError, match="workers"):
        SeamlessPaste(full, info, workers=0)


def test_generation_options_reject_unknown_paste_solver():
    from sadtalker_lib.pipeline import GenerationOptions

    assert GenerationOptions(paste_solver="fast").paste_solver == "fast"
    with pytest.raises(ValueError, match="paste_solver"):
        GenerationOptions(paste_solver="poisson")
