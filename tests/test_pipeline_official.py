"""The generation pipeline with the official-size networks (checkpoints written by ../shared/reference).

The 256 px run is kept to a few frames (~10 s per frame on a 2-core CPU). The 512 px run (~50 s per
frame) runs only with SADTALKER_LAB_SLOW=1; its one-second result is reported in the closing notes.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data

from sadtalker_lib.pipeline import TalkingHeadPipeline
from sadtalker_lib.video import probe_video, read_video

pytestmark = pytest.mark.parity


def _speech(seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


@pytest.mark.parametrize("size", [256, pytest.param(512, marks=[pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("SADTALKER_LAB_SLOW") != "1", reason="512 px official-size render: set SADTALKER_LAB_SLOW=1")])])
def test_official_size_generation(reference_checkpoints, tmp_path, size):
    pipe = TalkingHeadPipeline.from_checkpoints(reference_checkpoints, size=size, progress=False)
    seconds = 0.04  # 1 frame: the whole path (prepare, coefficients, render, paste, encode) once
    r = pipe.generate(skimage.data.astronaut(), (_speech(seconds), 16000), out=tmp_path / "o.mp4", seed=0,
                      progress=False)
    info = probe_video(r.video_path)
    assert info["has_audio"] and r.num_frames == round(seconds * 25)
    assert info["width"] == size
    frames = read_video(r.video_path, fps=None)
    assert frames.shape[0] == r.num_frames and frames.std() > 5  # a picture, not a constant
