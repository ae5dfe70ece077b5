"""CPBD: the no-reference sharpness metric of Narvekar & Karam (TIP 2011), as the ``cpbd`` package computes it.

The paper (Sec. 4.1, Table 1) reports CPBD for the sharpness of generated frames. The reference
implementation everybody uses is the ``cpbd`` PyPI package (a port of the authors' MATLAB code). Its
loops run in pure Python; this module computes the same quantities vectorised with numpy, scipy.ndimage and
scikit-image and agrees with the package (``tests/test_eval_cpbd.py`` measures the difference).

The algorithm, step by step (the package's choices, including its quirks, are kept on purpose):

1. ``canny`` (scikit-image, default sigma=1 and default thresholds, applied to the float image in 0..255)
   marks which 64x64 blocks are *edge blocks*: more than 0.2 % of their pixels are Canny edges.
2. A thinned Sobel edge map (Octave's ``edge(..., 'sobel')``: vertical-gradient kernel only,
   ``strength^2 > 2 sqrt(mean(strength^2))``, then a 1-pixel local-maximum thinning) gives the edge pixels
   whose *width* is measured.
3. Marziliano edge width: at a Sobel edge pixel whose gradient angle, quantised to 45 degrees, is 0 or +-180
   (horizontal gradient), walk left and right along the row while the intensity keeps rising / falling;
   width = steps left + steps right (each side at most 101). Where the horizontal gradient is exactly 0 the
   package sets the angle to 0, so such pixels are measured as if the gradient pointed right (kept).
4. Per edge block: just-noticeable width ``w_JNB`` = 5 if the block contrast (max - min, truncated to int)
   is <= 50, else 3; probability of blur detection ``P = 1 - exp(-(w / w_JNB)^3.6)``.
5. CPBD = fraction of measured edges (over all edge blocks) with ``round(100 P) <= 63`` -- the cumulative
   probability of blur detection at ``P_JNB = 63 %``.

Input: a greyscale image ``[H, W]`` (the package's input, values 0..255) or an RGB image, which is
converted to greyscale as the package's command line did (``imread(..., mode='L')``, i.e. PIL's ``L``).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve

__all__ = ["cpbd", "cpbd_frames", "to_gray", "sobel_edges", "marziliano_widths"]

# Constants of the cpbd package (cpbd/compute.py), from Narvekar & Karam 2011.
EDGE_BLOCK_THRESHOLD = 0.002  # a block is an edge block if > 0.2 % of its pixels are Canny edges
BETA = 3.6  # exponent of the probability-of-blur-detection model
BLOCK_SIZE = 64  # blocks of 64x64 pixels
JNB_LOW_CONTRAST, JNB_HIGH_CONTRAST, JNB_CONTRAST_SPLIT = 5.0, 3.0, 50  # w_JNB = 5 for contrast <= 50, else 3
P_JNB_BUCKETS = 64  # CPBD sums the histogram of round(100 P) over buckets 0..63
MAX_WIDTH_STEPS = 100  # the package walks at most 100 + 1 pixels to each side of an edge


def to_gray(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` RGB -> ``float64 [H, W]`` greyscale in 0..255.

    RGB uint8 is converted as PIL's ``convert('L')`` does (ITU-R 601-2 luma, rounded to uint8), which is
    what ``scipy.ndimage.imread(path, mode='L')`` in the package's command line returned. Float RGB in
    [0, 1] is scaled to 0..255 first.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"CPBD needs a greyscale [H, W] or RGB [H, W, 3] image, got shape {image.shape}")
    from PIL import Image

    rgb = image[..., :3]
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"), dtype=np.float64)


def sobel_edges(image: np.ndarray) -> np.ndarray:
    """Thinned Sobel edge map ``bool [H, W]`` as in the package's ``octave.sobel``.

    Only the horizontal-edge Sobel kernel (skimage's ``HSOBEL_WEIGHTS``, transposed, normalised by its
    absolute sum) is used; the threshold compares the *squared* strength with ``2 sqrt(mean(strength^2))``
    exactly as the package does.
    """
    h1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]) / 8.0  # HSOBEL_WEIGHTS / its sum|.|
    strength2 = np.square(convolve(image, h1.T))  # scipy.ndimage.convolve, mode 'reflect' (as the package)
    thresh2 = 2.0 * np.sqrt(np.mean(strength2))
    strength2[strength2 <= thresh2] = 0.0
    # simple thinning: strictly larger than both horizontal or both vertical neighbours (zero outside)
    padded = np.pad(strength2, 1)
    s = strength2
    x = (s > padded[1:-1, :-2]) & (s > padded[1:-1, 2:])
    y = (s > padded[:-2, 1:-1]) & (s > padded[2:, 1:-1])
    return x | y


def _runs(mask: np.ndarray, reverse: bool) -> np.ndarray:
    """Per row, length of the run of True values ending at each column (scanning right-to-left if reverse)."""
    m = mask[:, ::-1] if reverse else mask
    out = np.zeros(m.shape, np.int64)
    run = np.zeros(m.shape[0], np.int64)
    for c in range(m.shape[1]):  # one vectorised step per column
        run = np.where(m[:, c], run + 1, 0)
        out[:, c] = run
    return out[:, ::-1] if reverse else out


def marziliano_widths(edges: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Edge widths ``float64 [H, W]`` (0 where no width is measured), as the package's ``marziliano_method``."""
    h, w = image.shape
    widths = np.zeros((h, w))
    gy, gx = np.gradient(image)
    angles = np.where(gx != 0, np.degrees(np.arctan2(gy, gx)), 0.0)  # the package leaves 0 where gx == 0
    if not np.any(angles):
        return widths
    quantised = 45.0 * np.round(angles / 45.0)
    # d[:, j] = I[:, j] - I[:, j + 1]; the walks test the sign of consecutive differences
    d = image[:, :-1] - image[:, 1:]
    falling, rising = d > 0, d < 0  # falling: intensity decreases left -> right
    # run ending at column j scanning leftwards (how many consecutive j, j-1, ... satisfy the test)
    fall_left, rise_left = _runs(falling, reverse=False), _runs(rising, reverse=False)
    fall_right, rise_right = _runs(falling, reverse=True), _runs(rising, reverse=True)

    def steps(runs: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        ok = (cols >= 0) & (cols < d.shape[1])
        out = np.zeros(cols.shape, np.int64)
        out[ok] = runs[rows[ok], cols[ok]]
        return np.minimum(out, MAX_WIDTH_STEPS) + 1

    inner = np.zeros((h, w), bool)
    inner[1:-1, 1:-1] = True
    for angle_test, left_runs, right_runs in (
        (np.abs(quantised) == 180, fall_left, fall_right),  # gradient to the left: intensity falls left -> right
        (quantised == 0, rise_left, rise_right),  # gradient to the right: intensity rises left -> right
    ):
        rows, cols = np.nonzero(edges & inner & angle_test)
        # left walk tests d[col-2-m] for m = 0, 1, ...; right walk tests d[col+1+m]
        widths[rows, cols] = steps(left_runs, cols - 2, rows) + steps(right_runs, cols + 1, rows)
    return widths


def cpbd(image: np.ndarray) -> float:
    """CPBD sharpness of one image (greyscale ``[H, W]`` 0..255 or RGB ``[H, W, 3]``); higher is sharper.

    Returns 0.0 for an image with no edge block (as the package does). Images smaller than one 64x64 block
    raise ``ValueError`` (the package would silently return 0).
    """
    from skimage.feature import canny

    gray = to_gray(image)
    h, w = gray.shape
    if h < BLOCK_SIZE or w < BLOCK_SIZE:
        raise ValueError(f"CPBD needs an image of at least {BLOCK_SIZE}x{BLOCK_SIZE} px, got {w}x{h}")
    canny_edges = canny(gray)
    widths = marziliano_widths(sobel_edges(gray), gray)

    hist = np.zeros(101)
    total = 0
    for i in range(h // BLOCK_SIZE):
        for j in range(w // BLOCK_SIZE):
            rows = slice(BLOCK_SIZE * i, BLOCK_SIZE * (i + 1))
            cols = slice(BLOCK_SIZE * j, BLOCK_SIZE * (j + 1))
            if np.count_nonzero(canny_edges[rows, cols]) <= BLOCK_SIZE * BLOCK_SIZE * EDGE_BLOCK_THRESHOLD:
                continue
            block_widths = widths[rows, cols]
            block_widths = block_widths[block_widths != 0]
            block = gray[rows, cols]
            contrast = int(np.max(block) - np.min(block))
            jnb = JNB_LOW_CONTRAST if contrast <= JNB_CONTRAST_SPLIT else JNB_HIGH_CONTRAST
            p_blur = 1 - np.exp(-abs(block_widths / jnb) ** BETA)
            buckets = np.round(p_blur * 100).astype(np.int64)  # Python's round(): half to even, as np.round
            hist += np.bincount(buckets, minlength=101)[:101]
            total += block_widths.size
    if total > 0:
        hist = hist / total
    return float(np.sum(hist[:P_JNB_BUCKETS]))


def cpbd_frames(frames, step: int = 1) -> np.ndarray:
    """CPBD of every ``step``-th frame of ``frames`` (``[T, H, W, 3]`` or a list); ``float64 [T']``."""
    return np.array([cpbd(f) for f in list(frames)[::step]], np.float64)
