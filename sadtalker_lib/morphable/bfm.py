"""The Basel Face Model in the official ``BFM_model_front.mat`` layout -> :class:`MorphableModel`.

SadTalker (like Deep3DFaceRecon) reads ``checkpoints/BFM_Fitting/BFM_model_front.mat`` with
``src/face3d/models/bfm.py`` ``ParametricFaceModel``. The file is built by the user from the licensed
Basel Face Model 2009 (``01_MorphableModel.mat``) and the expression PCA (``Exp_Pca.bin``); it cannot be
shipped or downloaded here. Its keys (N vertices, F triangles; MATLAB, so indices are 1-based):

    meanshape [1, 3N] (or [3N, 1])   idBase [3N, 80]   exBase [3N, 64]   vertices interleaved x, y, z
    meantex [1, 3N] (0-255)          texBase [3N, 80]
    tri [F, 3]      point_buf [N, 8] (faces around each vertex, 0 = empty)     keypoints [1, 68]
    frontmask2_idx [M, 1], tri_mask2 [F2, 3], skinmask [1, N]   (read only in training; kept in ``extras``)

Quirks reproduced (tagged as official quirks below): 1-based indices, ``point_buf`` padding, recentring of the
mean shape only. Every key is checked: a missing key or a wrong shape raises :class:`BFMFormatError` naming
the key and the shape expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import EXP_DIM, ID_DIM, NUM_LANDMARKS, SH_INIT_LIT, TEX_DIM, MorphableModel, PerspectiveCamera

__all__ = ["BFM_FILE_NAME", "BFMFormatError", "read_bfm_mat", "load_bfm", "save_bfm_mat", "BFMModel"]

BFM_FILE_NAME = "BFM_model_front.mat"  # ParametricFaceModel(default_name=...)
_TRAIN_KEYS = ("frontmask2_idx", "tri_mask2", "skinmask")

# OFFICIAL QUIRK: BFM_model_front.mat stores every index array (tri, keypoints, point_buf, frontmask2_idx,
# tri_mask2) 1-based (MATLAB); bfm.py ParametricFaceModel.__init__ subtracts 1 from each.
BFM_INDEX_BASE = 1


def bfm_point_buf_to_zero_based(point_buf_1based, num_faces: int):
    """``point_buf`` [N, K] from the file (1-based face ids, 0 = empty slot) -> 0-based ids, empty -> ``num_faces``.

    # OFFICIAL QUIRK: bfm.py subtracts 1, so an empty slot becomes -1; compute_norm appends one zero normal after
    the F face normals and torch's negative indexing makes -1 pick exactly that zero row: empty slots add nothing.
    Here the slot points at that zero row (index F) explicitly. Vertices with more than K incident faces keep
    only the K listed (the official file lists at most 8), so their normal averages those faces only.
    """
    pb = np.asarray(point_buf_1based).astype(np.int64) - BFM_INDEX_BASE
    return np.where(pb < 0, num_faces, pb)


def recenter_mean_shape(mean_shape):
    """``recenter=True`` (bfm.py __init__): subtract the per-axis mean vertex from the MEAN SHAPE only.

    # OFFICIAL QUIRK: the identity / expression bases are not touched, so a face with alpha, beta != 0 is not
    centred; the official file's mean is not centred either, which is why the shift matters. mean_shape: [N, 3].
    """
    return mean_shape - mean_shape.mean(axis=0, keepdims=True)


class BFMFormatError(ValueError):
    """The .mat file does not hold the official BFM_model_front layout (missing key or wrong shape)."""


class BFMModel(MorphableModel):
    """A :class:`MorphableModel` read from ``BFM_model_front.mat``; ``extras`` holds the training-only arrays
    (``front_mask``, ``front_faces`` 0-based, ``skin_mask``) when the file has them."""

    extras: dict[str, np.ndarray]


def _shape_error(key: str, expected: str, got) -> BFMFormatError:
    return BFMFormatError(f"{BFM_FILE_NAME}: key {key!r} must have shape {expected}, got {tuple(np.shape(got))}")


def _vector(mat: dict, key: str, length: int, what: str) -> np.ndarray:
    """A row [1, L] or column [L, 1] (or flat [L]) -> [L]."""
    a = np.asarray(mat[key])
    if a.size != length or not (a.ndim == 1 or (a.ndim == 2 and 1 in a.shape)):
        raise _shape_error(key, f"[1, {what}] (or [{what}, 1])", a)
    return a.reshape(-1)


def _check_indices(key: str, a: np.ndarray, low: int, high: int, meaning: str) -> None:
    if a.size and (a.min() < low or a.max() > high):
        raise BFMFormatError(
            f"{BFM_FILE_NAME}: key {key!r} must hold {meaning} in {low}..{high} (1-based), "
            f"got values in {a.min()}..{a.max()}"
        )


def read_bfm_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate the arrays; returns the file's keys (1-based indices, as stored).

    ``path``: the .mat file or a folder holding ``BFM_model_front.mat``.
    """
    from scipy.io import loadmat

    path = Path(path)
    if path.is_dir():
        path = path / BFM_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. BFM_model_front.mat is built from the Basel Face Model 2009 (01_MorphableModel.mat, "
            "licensed, download it yourself) with Deep3DFaceRecon's transferBFM09; without it use "
            "sadtalker_lib.morphable.default.DefaultMorphableModel (an offline stand-in)."
        )
    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises several types for non-.mat files
        raise BFMFormatError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
    required = ("meanshape", "idBase", "exBase", "meantex", "texBase", "point_buf", "tri", "keypoints")
    expected = {
        "meanshape": "[1, 3N]", "idBase": f"[3N, {ID_DIM}]", "exBase": f"[3N, {EXP_DIM}]", "meantex": "[1, 3N]",
        "texBase": f"[3N, {TEX_DIM}]", "point_buf": "[N, K] (K = 8 in the official file)", "tri": "[F, 3]",
        "keypoints": f"[1, {NUM_LANDMARKS}]",
    }
    for key in required:
        if key not in mat:
            raise BFMFormatError(f"{path}: key {key!r} is missing (expected shape {expected[key]})")

    mean = np.asarray(mat["meanshape"])
    if mean.size == 0 or mean.size % 3 or not (mean.ndim == 1 or (mean.ndim == 2 and 1 in mean.shape)):
        raise _shape_error("meanshape", "[1, 3N] (or [3N, 1]) with 3N a multiple of 3", mean)
    n = mean.size // 3
    out = {"meanshape": mean.reshape(-1)}
    for key, cols in (("idBase", ID_DIM), ("exBase", EXP_DIM), ("texBase", TEX_DIM)):
        a = np.asarray(mat[key])
        if a.shape != (3 * n, cols):
            raise _shape_error(key, f"[3N, {cols}] = [{3 * n}, {cols}] (N = {n} vertices from meanshape)", a)
        out[key] = a
    out["meantex"] = _vector(mat, "meantex", 3 * n, f"3N = {3 * n}")
    tri = np.asarray(mat["tri"])
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.shape[0] == 0:
        raise _shape_error("tri", "[F, 3]", tri)
    _check_indices("tri", tri, 1, n, "vertex ids")
    f = tri.shape[0]
    pb = np.asarray(mat["point_buf"])
    if pb.ndim != 2 or pb.shape[0] != n:
        raise _shape_error("point_buf", f"[N, K] = [{n}, K] (8 in the official file)", pb)
    _check_indices("point_buf", pb, 0, f, "face ids (0 = empty slot)")
    kp = _vector(mat, "keypoints", NUM_LANDMARKS, str(NUM_LANDMARKS))
    _check_indices("keypoints", kp, 1, n, "vertex ids")
    out.update(tri=tri, point_buf=pb, keypoints=kp)
    for key in _TRAIN_KEYS:  # optional (read by the official constructor only when is_train)
        if key in mat:
            out[key] = np.asarray(mat[key])
    for key, v in out.items():
        if np.issubdtype(v.dtype, np.number) and not np.isfinite(v).all():
            raise BFMFormatError(f"{path}: key {key!r} holds NaN or inf")
    return out


def load_bfm(
    path: str | Path,
    *,
    recenter: bool = True,
    camera: PerspectiveCamera = PerspectiveCamera(),
    init_lit=SH_INIT_LIT,
) -> BFMModel:
    """``BFM_model_front.mat`` (file or folder) -> :class:`BFMModel`, as ParametricFaceModel builds it.

    Floats are cast to float32 and indices made 0-based (BFM_INDEX_BASE); with ``recenter`` the
    mean shape (only) is moved to zero mean (recenter_mean_shape).
    """
    m = read_bfm_mat(path)
    mean = m["meanshape"].astype(np.float32).reshape(-1, 3)
    if recenter:
        mean = recenter_mean_shape(mean)
    faces = m["tri"].astype(np.int64) - BFM_INDEX_BASE
    model = BFMModel(
        mean_shape=mean,
        id_base=m["idBase"].astype(np.float32),
        exp_base=m["exBase"].astype(np.float32),
        mean_tex=m["meantex"].astype(np.float32),
        tex_base=m["texBase"].astype(np.float32),
        faces=faces,
        keypoints=m["keypoints"].astype(np.int64) - BFM_INDEX_BASE,
        point_buf=bfm_point_buf_to_zero_based(m["point_buf"], len(faces)),
        camera=camera,
        init_lit=init_lit,
        name=f"BFM ({Path(path).name})",
    )
    model.extras = {}
    if "frontmask2_idx" in m:
        model.extras["front_mask"] = m["frontmask2_idx"].reshape(-1).astype(np.int64) - BFM_INDEX_BASE
    if "tri_mask2" in m:
        model.extras["front_faces"] = m["tri_mask2"].astype(np.int64) - BFM_INDEX_BASE
    if "skinmask" in m:
        model.extras["skin_mask"] = m["skinmask"].reshape(-1)
    return model


def save_bfm_mat(model: MorphableModel, path: str | Path, point_buf_size: int = 8) -> Path:
    """Write any :class:`MorphableModel` as a ``BFM_model_front.mat`` in the official layout (1-based indices,
    ``point_buf`` cut to ``point_buf_size`` faces per vertex with 0 padding, ``keypoints`` [1, 68]).

    Lets the official code (or :func:`load_bfm`) read e.g. the offline stand-in. ``load_bfm`` recentres the
    mean shape, so a model whose mean is off-centre comes back shifted (the bases are unchanged).
    """
    from scipy.io import savemat

    path = Path(path)
    if path.is_dir():
        path = path / BFM_FILE_NAME
    f = model.num_faces
    pb = model.point_buf.cpu().numpy()[:, :point_buf_size]
    pb = np.where(pb >= f, -1, pb) + BFM_INDEX_BASE  # empty slot -> 0
    if pb.shape[1] < point_buf_size:
        pb = np.pad(pb, ((0, 0), (0, point_buf_size - pb.shape[1])))
    arrays = {
        "meanshape": model.mean_shape.cpu().numpy().reshape(1, -1),
        "idBase": model.id_base.cpu().numpy(),
        "exBase": model.exp_base.cpu().numpy(),
        "meantex": model.mean_tex.cpu().numpy().reshape(1, -1),
        "texBase": model.tex_base.cpu().numpy(),
        "point_buf": pb.astype(np.int32),
        "tri": (model.faces.cpu().numpy() + BFM_INDEX_BASE).astype(np.int32),
        "keypoints": (model.keypoints.cpu().numpy() + BFM_INDEX_BASE).astype(np.int32).reshape(1, -1),
    }
    savemat(str(path), arrays)
    return path
