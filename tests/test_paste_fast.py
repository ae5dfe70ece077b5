"""The fast seamless paste (face.paste.SeamlessPaste, solver="fast") against cv2.seamlessClone (solver="opencv",
the official paste_pic): within 1 grey level on real images, every box orientation, and errors on bad input."""
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


# boxes covering both DST axes, even / odd tridiagonal lengths, a box at the picture's right edge
BOXES = [(133, 14, 184, 185), (120, 30, 181, 182), (100, 40, 203, 170), (90, 60, 150, 211), (330, 100, 182, 150)]


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


def test_generation_options_reject_unknown_paste_solver():
    from sadtalker_lib.pipeline import GenerationOptions

    assert GenerationOptions(paste_solver="fast").paste_solver == "fast"
    with pytest.raises(ValueError, match="paste_solver"):
        GenerationOptions(paste_solver="poisson")
