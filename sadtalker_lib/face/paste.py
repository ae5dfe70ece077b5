"""Paste rendered face frames back into the original picture (preprocess full / extfull).

Official behaviour (``src/utils/paste_pic.py``): each rendered frame is ``cv2.resize``d (bilinear) to the
paste box and Poisson-blended into the untouched original with
``cv2.seamlessClone(patch, full_img, 255 * ones, location, cv2.NORMAL_CLONE)``; there is no switch for it.
``seamless=False`` gives a plain (hard) paste of the same resized patch at the same place.

Paste box (``paste_box``): ``crop + quad`` for full (the face square), the crop box itself for extfull.
In extfull the renderer's frame has the face square's aspect (``CropInfo.size``) but is stretched to
the larger crop box, as the official code does.

Channel order does not matter here (every step works per channel); the official code works in BGR.
Frames: uint8 [h, w, 3]; original: uint8 [H, W, 3].

Fast seamless paste (``solver="fast"``; the default ``solver="opencv"`` calls ``cv2.seamlessClone``). With a
full mask, OpenCV 4.x's NORMAL_CLONE solves, per channel, the discrete Poisson equation (4-neighbour Laplacian)
on the (h - 2) x (w - 2) region centred on ``location`` (the mask's 1 px border is dropped), with Dirichlet
values = the original there. The guidance gradients are the patch's (forward differences) where the mask,
eroded by a 3 x 3 kernel three times against its zero border, is set (3 px in from each side), the original's
elsewhere; interior values are clipped to [0, 255] and truncated (not rounded). OpenCV solves with two 2-D DSTs
per channel built on complex DFTs of size 2n + 2 in float32, every frame. :class:`SeamlessPaste` solves the same
equation for the correction  corr = solution - patch : its right-hand side is zero except on a band 3 px wide along
the region's edge (inside, the guidance is the patch's own gradient), so the band is a sparse operator on the patch
made once per video, and the 2-D DST of the right-hand side has rank 10 per channel (short 1-D DSTs of the band's
rows and columns). Per frame: that low-rank spectrum, divided by the Laplacian's eigenvalues, and ONE inverse 2-D
DST-I (``scipy.fft``) on a grid padded so that every DST length N has N + 1 = 2^a 3^b 5^c (an interior side of
427 px, 428 = 4 x 107, would cost ~5x); a padded grid puts a fake boundary next to the region, whose sources come from a
capacitance matrix inverted once per video (``SeamlessPaste._capacitance``). Result = patch + floor(corr),
saturated: OpenCV's clip-and-truncate, exactly. Same equation, other float rounding: max |diff| 1 grey level
against ``cv2.seamlessClone`` (truncation flips). The float32 result matches the float64 (exact) solution in all but
< 0.01 % of the region's values, while OpenCV's float32 solver differs from it in 1-6 % of them (measured on the
astronaut at 512 / 1024 px; a 900 px box: 1.4 % vs 11 %): those flips are OpenCV's, so no faster solver can
match it exactly, and "opencv" stays the default where parity with the official output matters.
Speed: ``benchmarks/paste_back.py`` (benchmarks/results/paste_back.md).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import scipy.fft
import scipy.sparse

from .align import CropInfo


def paste_box(info: CropInfo, extended: bool = False,
              full_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(oy1, oy2, ox1, ox2) in the original picture.

    full: ``(cly + ly, cly + ry, clx + lx, clx + rx)`` with the quad truncated by ``int()``;
    extfull (``extended=True``): ``(cly, cry, clx, crx)``.
    ``full_size`` (W, H) of the original: if ``info.rsize`` differs (a very large face was shrunk in
    ``align_face``), the box is scaled back to the original; the official code uses the shrunk numbers
    as they are, which misplaces the face, so this is a deliberate fix (with a warning).
    """
    if info.crop is None or info.quad is None:
        raise ValueError("paste-back needs a crop box: the portrait was preprocessed in 'resize' mode (no crop)")
    clx, cly, crx, cry = info.crop
    lx, ly, rx, ry = (int(v) for v in info.quad)
    box = (cly, cry, clx, crx) if extended else (cly + ly, cly + ry, clx + lx, clx + rx)
    if full_size is not None and info.rsize is not None and tuple(info.rsize) != tuple(full_size):
        sx, sy = full_size[0] / info.rsize[0], full_size[1] / info.rsize[1]
        warnings.warn(
            f"crop was computed at {info.rsize} but the picture is {full_size}; scaling the paste box "
            "(the official paste_pic would use the unscaled box)",
            stacklevel=2,
        )
        box = (round(box[0] * sy), round(box[1] * sy), round(box[2] * sx), round(box[3] * sx))
    return box


def paste_location(box: tuple[int, int, int, int], frame_w: int, frame_h: int) -> tuple[int, int]:
    """Centre (x, y) given to ``cv2.seamlessClone``: the box centre, pulled left/up only where the box
    would pass the right/bottom edge (``paste_pic``: ``min((ox1 + ox2) // 2, frame_w - (ox2 - ox1) // 2)``)."""
    oy1, oy2, ox1, ox2 = box
    return (min((ox1 + ox2) // 2, frame_w - (ox2 - ox1) // 2), min((oy1 + oy2) // 2, frame_h - (oy2 - oy1) // 2))


def resize_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The rendered frame stretched to the box: ``cv2.resize(frame, (ox2 - ox1, oy2 - oy1))`` (bilinear)."""
    oy1, oy2, ox1, ox2 = box
    if ox2 <= ox1 or oy2 <= oy1:
        raise ValueError(f"empty paste box (oy1, oy2, ox1, ox2) = {box}")
    return cv2.resize(np.asarray(frame, dtype=np.uint8), (ox2 - ox1, oy2 - oy1))


def _check_image(name: str, a: np.ndarray) -> None:
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 [H, W, 3], got {a.dtype} {a.shape}")


def _check_images(frame: np.ndarray, full_img: np.ndarray) -> None:
    _check_image("frame", frame)
    _check_image("full_img", full_img)


SOLVERS = ("fast", "opencv")  # the seamless paste's Poisson solver: SeamlessPaste, or cv2.seamlessClone per frame
ERODE_PX = 3  # OpenCV Cloning::computeDerivatives: erode(mask, 3 x 3 ones, iterations=3) -> 3 px off each side


def _smooth_length(n: int) -> int:
    """The smallest N >= n with N + 1 free of prime factors over 5: scipy.fft's DST-I of length N is a real FFT of
    length 2 (N + 1), which then runs on radix-2/3/4/5 passes only (another factor costs a generic pass, a large prime
    Bluestein's three FFTs: a DST of 427 points (428 = 4 x 107) costs ~5x one of 431)."""
    while True:
        k = n + 1
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return n
        n += 1


def _dst_matrix(n: int) -> np.ndarray:
    """The orthonormal DST-I [n, n] (symmetric, its own inverse; ``scipy.fft.dst(type=1, norm='ortho')``):
    Q[i, k] = sqrt(2 / (n + 1)) sin(pi (i + 1)(k + 1) / (n + 1)); its rows are the 1-D Dirichlet Laplacian's
    eigenvectors, eigenvalues ``_laplacian_eigenvalues(n)``."""
    i = np.arange(1, n + 1)
    return np.sqrt(2.0 / (n + 1)) * np.sin(np.pi * np.outer(i, i) / (n + 1))


def _laplacian_eigenvalues(n: int) -> np.ndarray:
    """[n]: 2 cos(pi (k + 1) / (n + 1)) - 2 of the 3-point Laplacian u[i-1] - 2 u[i] + u[i+1] with u[-1] = u[n] = 0."""
    return 2.0 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)) - 2.0


_BLAS: list = []  # threadpoolctl's controller, made on first use


def _one_blas_thread():
    """A context keeping BLAS / LAPACK to one thread where threadpoolctl is installed, else nothing: the set-up's
    products and inverse are small, and OpenBLAS's threads stall on a busy machine (measured: a 360 x 360 inverse,
    300 ms with 2 threads under load vs 30 ms with 1)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _band_pixels(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Interior (row, column) indices [(2e - 1) (n + m - 2e + 1)] of the band: the pixels with at least one guidance
    edge off the eroded mask or a neighbour on the region's frame (interior rows / columns < e or > size - e). Order:
    the band rows (e at the top, e - 1 at the bottom) over all m columns, then the other rows' band columns."""
    e = ERODE_PX
    band_n, band_m = np.r_[0:e, n - e + 1:n], np.r_[0:e, m - e + 1:m]
    mid = np.arange(e, n - e + 1)
    rows = np.concatenate([np.repeat(band_n, m), np.repeat(mid, len(band_m))])
    cols = np.concatenate([np.tile(np.arange(m), len(band_n)), np.tile(band_m, len(mid))])
    return rows, cols


class SeamlessPaste:
    """The seamless (Poisson) paste-back of one video with everything frame-independent computed once.

    ``SeamlessPaste(full_img, info, extended=...)(frame)`` gives ``cv2.seamlessClone``'s result (the official
    ``paste_pic``) within 1 grey level (module docstring). ``full_img``: uint8 [H, W, 3], kept by reference (not
    modified; the pixels outside the region are copied from it each frame). ``dtype``: the solver's float type;
    ``workers``: threads of the inverse DST (``scipy.fft``).

    Per-video state: the region (``y0, x0``, size ``h x w`` = the paste box less 1 px a side; unknowns: its interior
    n x m), the original's part of the band's right-hand side, the padded grid N x M >= n x m of cheap DST lengths,
    the eigenvalues' inverse ``1 / (lam_a + mu_b)`` [N, M], the DST basis vectors of the band and of the fake
    boundary, the capacitance matrix's inverse. Work layout [3, N, M] (channel planes).
    """

    def __init__(self, full_img: np.ndarray, info: CropInfo, *, extended: bool = False,
                 dtype: type = np.float32, workers: int = 1):
        full_img = np.asarray(full_img)
        _check_image("full_img", full_img)
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        frame_h, frame_w = full_img.shape[:2]
        self.full_img, self.extended, self.dtype, self.workers = full_img, extended, np.dtype(dtype), int(workers)
        self.box = paste_box(info, extended, full_size=(frame_w, frame_h))
        oy1, oy2, ox1, ox2 = self.box
        ph, pw = oy2 - oy1, ox2 - ox1
        if ph > frame_h or pw > frame_w:
            raise ValueError(f"paste patch {pw}x{ph} is larger than the picture {frame_w}x{frame_h}")
        if min(ph, pw) < 2 * ERODE_PX + 3:
            raise ValueError(f"paste box {pw}x{ph} is too small for the seamless paste (use solver='opencv')")
        self.location = paste_location(self.box, frame_w, frame_h)
        h, w = ph - 2, pw - 2  # OpenCV drops the mask's 1 px border
        y0, x0 = self.location[1] - h // 2, self.location[0] - w // 2
        if y0 < 0 or x0 < 0 or y0 + h > frame_h or x0 + w > frame_w:
            raise ValueError(f"seamless region {w}x{h} at ({x0}, {y0}) leaves the picture {frame_w}x{frame_h}")
        self.region = (y0, x0, h, w)
        self._region_u8 = full_img[y0:y0 + h, x0:x0 + w].copy()
        n, m = self.shape = (h - 2, w - 2)
        # a length that is not cheap is padded by at least one row / column (the fake boundary, _capacitance)
        big_n, big_m = self.padded_shape = tuple(k if _smooth_length(k) == k else _smooth_length(k + 1) for k in (n, m))
        self._band = self._band_operator(h, w)
        g = 1.0 / (_laplacian_eigenvalues(big_n)[:, None] + _laplacian_eigenvalues(big_m)[None, :])  # [N, M]
        q_n, q_m = _dst_matrix(big_n), _dst_matrix(big_m)
        e, t = ERODE_PX, self.dtype
        band_n = np.r_[0:e, n - e + 1:n]  # the band's interior rows / columns (2e - 1 each)
        band_m = np.r_[0:e, m - e + 1:m]
        self._green = g.astype(t)
        self._q_band = (np.ascontiguousarray(q_n[:, band_n], dtype=t), np.ascontiguousarray(q_m[band_m], dtype=t))
        with _one_blas_thread():
            self._capacitance(g, q_n, q_m)

    def _band_operator(self, h: int, w: int) -> tuple:
        """The correction's right-hand side on the band (``_band_pixels`` order) as  S @ patch + k : S sparse
        [band, (h + 2) (w + 2)] on the flat patch, k [band, 3] the original's part. With u = patch + corr inside,
        A corr = (the Poisson right-hand side) - A patch, which cancels wherever the guidance is the patch's gradient
        on all four edges; on the band it is  -div(J grad patch) + (the patch's values on the frame next to the pixel)
        + div(J grad original) - (the original's values there) (J: 1 off the eroded mask, forward differences,
        backward divergence as OpenCV)."""
        e, (n, m) = ERODE_PX, self.shape
        off = np.ones((h, w), np.float64)
        off[e:h - e, e:w - e] = 0.0
        frame = np.ones((h, w), np.float64)
        frame[1:-1, 1:-1] = 0.0
        d = self._region_u8.astype(np.float64)
        rhs = _divergence((d[:, 1:] - d[:, :-1]) * off[:, :-1, None], (d[1:] - d[:-1]) * off[:-1, :, None])
        rhs[0] -= d[0, 1:-1]  # Dirichlet values (the original on the region's 1 px frame) move to the right side
        rhs[-1] -= d[-1, 1:-1]
        rhs[:, 0] -= d[1:-1, 0]
        rhs[:, -1] -= d[1:-1, -1]
        iy, ix = _band_pixels(n, m)
        y, x = iy + 1, ix + 1  # region coordinates
        weights = [  # (dy, dx, weight) of the 5-point stencil on the patch
            (0, 0, 2 * off[y, x] + off[y, x - 1] + off[y - 1, x]),
            (0, 1, frame[y, x + 1] - off[y, x]), (1, 0, frame[y + 1, x] - off[y, x]),
            (0, -1, frame[y, x - 1] - off[y, x - 1]), (-1, 0, frame[y - 1, x] - off[y - 1, x])]
        out_idx = np.arange(len(y))
        rows = np.concatenate([out_idx] * len(weights))
        cols = np.concatenate([(y + 1 + dy) * (w + 2) + (x + 1 + dx) for dy, dx, _ in weights])
        data = np.concatenate([wt for _, _, wt in weights])
        keep = data != 0
        op = scipy.sparse.csr_matrix((data[keep].astype(self.dtype), (rows[keep], cols[keep])),
                                     shape=(len(y), (h + 2) * (w + 2)))
        return op, rhs[iy, ix].astype(self.dtype)  # [band, 3]

    def _capacitance(self, g: np.ndarray, q_n: np.ndarray, q_m: np.ndarray) -> None:
        """The padded grid's fake boundary. Solving on N x M > n x m with zero Dirichlet values at N and M gives the
        right interior only if the solution is 0 on the row n (columns < m) and the column m (rows < n) too: a
        source sigma on those nodes Gamma makes it so, from  C sigma = -u0 on Gamma  with u0 the padded solve and
        C = E^T A^-1 E (A: the padded Laplacian, E: Gamma's unit vectors; a principal block of the negative definite
        A^-1, so invertible). In DST space Gamma's row node j is  a (x) q_m[j], a = q_n[n], and column node i
        q_n[i] (x) b, b = q_m[m], so C's blocks are products of small matrices and g [N, M]. Stored (dtype): C^-1;
        a, q_m[:m], g a [N, M] (row n); b, q_n[:n], g b [N, M] (column m)."""
        n, m = self.shape
        big_n, big_m = g.shape
        self._gamma, t = None, self.dtype
        if (big_n, big_m) == (n, m):
            return
        blocks, row, col = [], None, None
        if big_n > n:
            a, q_rows = q_n[n], q_m[:m]
            row = (a, q_rows, a[:, None] * g)
            blocks.append(q_rows * (a[:, None] ** 2 * g).sum(0) @ q_rows.T)
        if big_m > m:
            b, q_cols = q_m[m], q_n[:n]
            col = (b, q_cols, g * b[None, :])
            blocks.append(q_cols * (g * b[None, :] ** 2).sum(1) @ q_cols.T)
        if row is not None and col is not None:  # C_rc[j, i] = sum_ab q_m[j, b] q_n[i, a] q_n[n, a] g[a, b] q_m[m, b]
            c_rc = row[1] @ (row[0][:, None] * g * col[0][None, :]).T @ col[1].T
            cap = np.block([[blocks[0], c_rc], [c_rc.T, blocks[1]]])
        else:
            cap = blocks[0]
        self._gamma = (np.linalg.inv(cap).astype(t),
                       None if row is None else tuple(np.ascontiguousarray(v, dtype=t) for v in row),
                       None if col is None else tuple(np.ascontiguousarray(v, dtype=t) for v in col))

    def matches(self, full_img: np.ndarray) -> bool:
        """Whether this precomputation holds for ``full_img`` (same array, region unchanged)."""
        y0, x0, h, w = self.region
        return full_img is self.full_img and np.array_equal(full_img[y0:y0 + h, x0:x0 + w], self._region_u8)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """A rendered frame uint8 [h, w, 3] (any size: it is stretched to the box) -> the picture with it pasted."""
        frame = np.asarray(frame)
        _check_image("frame", frame)
        y0, x0, h, w = self.region
        patch = resize_patch(frame, self.box)
        corr = self._correction(*self._band_values(patch))  # [3, n, m]
        # the solution is patch + corr, clipped to [0, 255] and truncated as OpenCV does; the patch is integer, so
        # that is patch + floor(corr), saturated: exact in float and in cv2.add's rounding to uint8
        np.floor(corr, out=corr)
        out = self.full_img.copy()
        inside = out[y0 + 1:y0 + h - 1, x0 + 1:x0 + w - 1]  # a view: cv2.add writes into the picture
        _into(inside, cv2.add(cv2.merge([corr[0], corr[1], corr[2]]), patch[2:-2, 2:-2], dst=inside, dtype=cv2.CV_8U))
        return out

    def paste_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several frames (uint8 [h, w, 3] each), all checked first, then pasted one by one."""
        frames = [np.asarray(f) for f in frames]
        for f in frames:
            _check_image("frame", f)
        return [self(f) for f in frames]

    def _band_values(self, patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The correction's right-hand side (``_band_operator``) -> band rows [3, 2e - 1, m], band columns of the
        other rows [3, n - 2e + 1, 2e - 1] (views)."""
        (n, m), k = self.shape, 2 * ERODE_PX - 1
        op, const = self._band
        v = op @ patch.reshape(-1, 3)  # [band, 3]
        v += const
        return v[:k * m].reshape(k, m, 3).transpose(2, 0, 1), v[k * m:].reshape(n - k, k, 3).transpose(2, 0, 1)

    def _correction(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Solve A corr = r on the interior for r nonzero on the band only -> corr [3, n, m] (a view).

        The 2-D DST of r (Q_N r Q_M) has rank 2 (2e - 1) per channel: Q_N[:, band rows] DST_M(band rows) +
        DST_N(band columns) Q_M[band columns] (short 1-D DSTs; products by ``cv2.gemm``, ~3x faster than einsum here
        and without BLAS threads); the fake boundary's sources add rank 2. The spectrum is divided by the
        eigenvalues; one full inverse 2-D DST-I."""
        n, m = self.shape
        big_n, big_m = self.padded_shape
        e, t = ERODE_PX, self.dtype
        k = 2 * e - 1
        left = np.empty((3, big_n, 2 * k), t)  # spectrum = left @ right, per channel
        right = np.empty((3, 2 * k, big_m), t)
        left[:, :, :k] = self._q_band[0]
        right[:, k:] = self._q_band[1]
        right[:, :k] = scipy.fft.dst(rows, type=1, n=big_m, axis=2, norm="ortho")
        left_c = np.zeros((3, k, big_n), t)
        left_c[:, :, e:n - e + 1] = cols.transpose(0, 2, 1)
        left[:, :, k:] = scipy.fft.dst(left_c, type=1, axis=2, norm="ortho", overwrite_x=True).transpose(0, 2, 1)
        spec = np.empty((3, big_n, big_m), t)
        for c in range(3):
            _into(spec[c], cv2.gemm(left[c], right[c], 1.0, None, 0.0, dst=spec[c]))
        if self._gamma is not None:
            self._add_gamma_sources(spec)
        spec *= self._green
        corr = scipy.fft.dstn(spec, type=1, axes=(1, 2), norm="ortho", overwrite_x=True, workers=self.workers)
        return corr[:, :n, :m]

    def _add_gamma_sources(self, spec: np.ndarray) -> None:
        """The fake boundary's sources (``_capacitance``) added to the right-hand side's spectrum [3, N, M] in place:
        u0 on Gamma (Q (g spec) Q there: one weighted sum over the spectrum per side), sigma = -C^-1 u0 (einsum: no
        BLAS threads, which stall on a busy machine), spectrum  a (x) (q_m[:m]^T sigma_row) +
        (q_n[:n]^T sigma_col) (x) b  (a rank-2 ``cv2.gemm`` update)."""
        cap_inv, row, col = self._gamma
        u0 = []
        if row is not None:
            u0.append(np.einsum("jb,cb->cj", row[1], np.einsum("ab,cab->cb", row[2], spec)))
        if col is not None:
            u0.append(np.einsum("ia,ca->ci", col[1], np.einsum("ab,cab->ca", col[2], spec)))
        sigma = -np.einsum("pq,cq->cp", cap_inv, np.concatenate(u0, axis=1))  # [3, |Gamma|]
        n_src = len(u0)
        left = np.empty((3, spec.shape[1], n_src), spec.dtype)
        right = np.empty((3, n_src, spec.shape[2]), spec.dtype)
        if row is not None:
            left[:, :, 0] = row[0]
            right[:, 0] = np.einsum("jb,cj->cb", row[1], sigma[:, :row[1].shape[0]])
        if col is not None:
            left[:, :, -1] = np.einsum("ia,ci->ca", col[1], sigma[:, -col[1].shape[0]:])
            right[:, -1] = col[0]
        for c in range(3):
            _into(spec[c], cv2.gemm(left[c], right[c], 1.0, spec[c], 1.0, dst=spec[c]))


def _into(dst: np.ndarray, result: np.ndarray) -> None:
    """Make sure an OpenCV call given ``dst=`` (a view) wrote there: copy its result in if it made a new array."""
    if not np.may_share_memory(dst, result):
        dst[...] = result


def _divergence(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Backward-difference divergence of forward-difference fields gx [h, w - 1, C], gy [h - 1, w, C] on the
    interior [h - 2, w - 2, C] (OpenCV's computeLaplacianX/Y there)."""
    return (gx[1:-1, 1:] - gx[1:-1, :-1]) + (gy[1:, 1:-1] - gy[:-1, 1:-1])


_LAST_PASTE: list[SeamlessPaste] = []  # paste_frame's per-video cache: the last SeamlessPaste built


def _seamless_for(full_img: np.ndarray, info: CropInfo, extended: bool) -> SeamlessPaste:
    frame_h, frame_w = full_img.shape[:2]
    box = paste_box(info, extended, full_size=(frame_w, frame_h))
    if _LAST_PASTE and _LAST_PASTE[0].box == box and _LAST_PASTE[0].matches(full_img):
        return _LAST_PASTE[0]
    with warnings.catch_warnings():  # paste_box already warned above
        warnings.simplefilter("ignore")
        sp = SeamlessPaste(full_img, info, extended=extended)
    _LAST_PASTE[:] = [sp]
    return sp


def paste_frame(
    frame: np.ndarray, full_img: np.ndarray, info: CropInfo, *, extended: bool = False, seamless: bool = True,
    solver: str = "opencv",
) -> np.ndarray:
    """One rendered frame pasted into (a copy of) the original picture.

    seamless=True: the official Poisson blend (``cv2.seamlessClone``, NORMAL_CLONE, full mask); the blend
    keeps the picture's colours at the box border, so a rendered face with other colours gets tinted.
    solver="opencv" (default): ``cv2.seamlessClone`` itself, every frame. solver="fast": :class:`SeamlessPaste`
    (within 1 grey level of it, several times faster), reused while the same ``full_img`` array and box come back (the
    last one is cached).
    seamless=False: the resized patch written over the box (its top-left corner is ``location - size // 2``,
    which is the box itself unless the box passes the right/bottom edge).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got '{solver}'")
    frame, full_img = np.asarray(frame), np.asarray(full_img)
    _check_images(frame, full_img)
    if seamless and solver == "fast":
        return _seamless_for(full_img, info, extended)(frame)
    frame_h, frame_w = full_img.shape[:2]
    box = paste_box(info, extended, full_size=(frame_w, frame_h))
    patch = resize_patch(frame, box)
    ph, pw = patch.shape[:2]
    if ph > frame_h or pw > frame_w:
        raise ValueError(f"paste patch {pw}x{ph} is larger than the picture {frame_w}x{frame_h}")
    location = paste_location(box, frame_w, frame_h)
    if seamless:
        mask = 255 * np.ones(patch.shape, patch.dtype)
        return cv2.seamlessClone(patch, full_img, mask, (int(location[0]), int(location[1])), cv2.NORMAL_CLONE)
    x0, y0 = max(location[0] - pw // 2, 0), max(location[1] - ph // 2, 0)
    out = full_img.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = patch[: frame_h - y0, : frame_w - x0]
    return out


def paste_frames(
    frames: Iterable[np.ndarray],
    full_img: np.ndarray,
    info: CropInfo,
    *,
    extended: bool = False,
    seamless: bool = True,
    progress: bool = False,
    solver: str = "opencv",
    batch: int = 8,
) -> Iterator[np.ndarray]:
    """``paste_frame`` over a stream of frames (a generator, so long videos need not fit in memory); the fast
    solver's precomputation is made once for the stream, which it takes ``batch`` frames at a time (each chunk is
    checked first, then pasted frame by frame: the pictures do not depend on ``batch``)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="paste-back" + (f" (seamless, {solver})" if seamless else ""))
    if not (seamless and solver == "fast"):
        for frame in frames:
            yield paste_frame(frame, full_img, info, extended=extended, seamless=seamless, solver=solver)
        return
    full_img = np.asarray(full_img)
    _check_image("full_img", full_img)
    paste, chunk = SeamlessPaste(full_img, info, extended=extended), []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == batch:
            yield from paste.paste_batch(chunk)
            chunk = []
    if chunk:
        yield from paste.paste_batch(chunk)


def render_frame_size(info: CropInfo, size: int = 256) -> tuple[int, int]:
    """(width, height) the official ``AnimateFromCoeff.generate`` resizes rendered frames to before the
    paste-back: ``(size, int(size * h / w))`` with ``(w, h) = crop_info.size`` (``src/facerender/animate.py``)."""
    w, h = info.size
    return size, int(size * h / w)
