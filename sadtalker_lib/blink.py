"""Eye-blink control signal z_blink in [0, 1] per video frame (paper Eq. 2 input; supp. Eq. 7).

ExpNet takes one blink value per frame ([B, T, 1]); 0 = eyes as in the reference, 1 = fully closed.
The official inference draws blinks at random (``src/generate_batch.py`` ``generate_blink_seq_randomly``)
with python's global ``random`` module; :func:`random_blink_sequence` reproduces it draw for draw, so with
``random.seed(1234)`` it gives the official fixture's ``ratio_gt`` exactly. :func:`blink_ratio` turns any
user choice (random, none / still, a per-frame signal) into the [1, T, 1] ratio.
"""
from __future__ import annotations

import random as _random
from typing import Sequence, Union

import numpy as np

__all__ = ["BLINK_SHAPE", "MIN_FRAMES_FOR_BLINKS", "random_blink_sequence", "blink_ratio"]

# One blink is these 5 frames of the signal (official generate_blink_seq_randomly).
BLINK_SHAPE: tuple[float, ...] = (0.5, 0.9, 1.0, 0.9, 0.5)
# Clips of at most this many frames get no blinks (official: ``if num_frames <= 20: return ratio``).
MIN_FRAMES_FOR_BLINKS = 20
# The gap before each blink is drawn from range(min(10, T), min(int(T / 2), 70)) (official).
BLINK_GAP_MIN = 10
BLINK_GAP_MAX = 70


def random_blink_sequence(num_frames: int, rng: _random.Random | None = None) -> np.ndarray:
    """Official random blinks: [num_frames, 1] float64 in [0, 1].

    Starting at frame 0, repeatedly draw a gap ``g = rng.choice(range(min(10, T), min(int(T / 2), 70)))``;
    if the blink fits (``pos + g + 5 <= T - 1``) write :data:`BLINK_SHAPE` at ``pos + g`` and move to
    ``pos + g + 5``, otherwise stop. ``rng`` defaults to python's global ``random`` module, as in the
    official code (so ``random.seed(s)`` reproduces an official run).

    Deviation: for 21 frames the official range is empty and ``random.choice`` raises IndexError; here such
    clips get no blinks.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    r = _random if rng is None else rng
    ratio = np.zeros((num_frames, 1))
    if num_frames <= MIN_FRAMES_FOR_BLINKS:
        return ratio
    gaps = range(min(BLINK_GAP_MIN, num_frames), min(int(num_frames / 2), BLINK_GAP_MAX))
    if len(gaps) == 0:
        return ratio
    n = len(BLINK_SHAPE)
    pos = 0
    while 0 <= pos < num_frames:
        start = pos + r.choice(gaps)
        if start + n > num_frames - 1:
            break
        ratio[start:start + n, 0] = BLINK_SHAPE
        pos = start + n
    return ratio


BlinkSpec = Union[str, None, bool, Sequence[float], np.ndarray]


def blink_ratio(blink: BlinkSpec, num_frames: int, rng: _random.Random | None = None) -> np.ndarray:
    """The ExpNet blink input [1, T, 1] float32 from a user choice.

    * ``"random"`` or ``True``: :func:`random_blink_sequence` (the official default).
    * ``None``, ``False``, ``"none"`` or ``"still"``: all zeros (official ``--still``, and also what the official
      code uses when a reference eye-blink video drives the expression).
    * a per-frame signal (sequence or array of T values in [0, 1], shape [T], [T, 1] or [1, T, 1]).
    """
    if isinstance(blink, str):
        key = blink.lower()
        if key == "random":
            seq = random_blink_sequence(num_frames, rng)
        elif key in ("none", "still", "off"):
            seq = np.zeros((num_frames, 1))
        else:
            raise ValueError(f"unknown blink mode '{blink}'; use 'random', 'none', or pass a per-frame signal")
    elif blink is None or blink is False:
        seq = np.zeros((num_frames, 1))
    elif blink is True:
        seq = random_blink_sequence(num_frames, rng)
    else:
        seq = np.asarray(blink, dtype=np.float64).reshape(-1, 1)
        if seq.shape[0] != num_frames:
            raise ValueError(f"blink signal has {seq.shape[0]} values but the audio has {num_frames} video frames; "
                             "give one value per frame")
        if not np.all(np.isfinite(seq)) or seq.min() < 0 or seq.max() > 1:
            raise ValueError("blink signal values must be finite and in [0, 1] (0 = open, 1 = closed)")
    return seq.astype(np.float32)[None]  # [1, T, 1]
