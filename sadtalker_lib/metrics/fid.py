"""FID (Heusel et al. 2017) as pytorch-fid computes it (the implementation the paper cites, ref. [35]).

* Features: pytorch-fid's ``InceptionV3([3])`` -- the FID Inception (TF 2015-12-05 weights ported to PyTorch,
  ``pt_inception-2015-12-05-6726825d.pth``), input RGB in [0, 1] resized to 299x299 bilinear inside the
  network, output the 2048-d final average pool. pytorch-fid would download the weights on first use;
  here they must already be in torch hub's cache (``<torch.hub.get_dir()>/checkpoints/``), otherwise
  :class:`WeightsMissingError` says where to put the file. They are loaded with ``weights_only=True``.
* Sampling (paper Sec. 4.1): every frame (or every ``step``-th) of the generated videos vs every frame of
  the real videos, each resized to 256x256 first.
* Distance: ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` with pytorch-fid's numerics
  (``fid_score.calculate_frechet_distance``: ``scipy.linalg.sqrtm`` of the product; if not finite, 1e-6 is
  added to both diagonals; a small imaginary part is dropped, a large one is an error).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .weights import WeightsMissingError

__all__ = ["FID_WEIGHTS_FILE", "fid_weights_path", "load_inception", "inception_features", "activation_statistics",
           "frechet_distance", "fid_from_features", "fid", "FID_SIZE"]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch_fid.inception.FID_WEIGHTS_URL's file name
FID_SIZE = 256  # paper Sec. 4.1: frames resized to 256x256 for evaluation
FID_EPS = 1e-6  # pytorch_fid.fid_score.calculate_frechet_distance eps


def fid_weights_path() -> Path:
    """Where pytorch-fid's weights are expected: ``<torch.hub.get_dir()>/checkpoints/pt_inception-...pth``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def load_inception(weights: str | Path | None = None, *, device: str = "cpu"):
    """pytorch-fid's ``InceptionV3([3])`` (pool3, 2048-d) in eval mode, weights read locally (never downloaded)."""
    from pytorch_fid import inception as fid_inception

    path = Path(weights) if weights is not None else fid_weights_path()
    if not path.is_file():
        raise WeightsMissingError(
            f"FID Inception weights not found at {path}. Download {FID_WEIGHTS_FILE} from "
            f"{fid_inception.FID_WEIGHTS_URL} and put it in {fid_weights_path().parent}/ (torch hub's cache) "
            "or pass its path."
        )

    from ..official.io import read_checkpoint  # the package's one torch.load (weights only)

    def local_state_dict(url, *args, **kwargs):  # replaces pytorch-fid's downloader: local file, weights_only
        return read_checkpoint(path)

    with _patched(fid_inception, "load_state_dict_from_url", local_state_dict):
        model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return model.to(device).eval()


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    interp = cv2.INTER_AREA if min(frame.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(frame, (size, size), interpolation=interp)


def inception_features(frames, model, *, size: int | None = FID_SIZE, batch_size: int = 50,
                       device: str = "cpu") -> np.ndarray:
    """``float64 [N, D]`` pool features of ``frames`` (uint8 ``[N, H, W, 3]`` RGB), each resized to ``size`` first.

    ``model`` maps ``[B, 3, H, W]`` in [0, 1] to a list whose first item is ``[B, D, 1, 1]`` (pytorch-fid's API).
    """
    import torch
    import torch.nn.functional as F

    frames = list(frames)
    out = []
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            batch = np.stack([_resize(np.asarray(f), size) if size else np.asarray(f)
                              for f in frames[start: start + batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0).to(device)
            pred = model(x)[0]
            if pred.ndim == 4 and (pred.shape[2] != 1 or pred.shape[3] != 1):
                pred = F.adaptive_avg_pool2d(pred, (1, 1))  # as pytorch-fid's get_activations
            out.append(pred.reshape(len(batch), -1).cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))


def activation_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [D], sigma [D, D])``: mean and ``np.cov(rowvar=False)`` of ``[N, D]`` features (N >= 2)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors [N, D], got shape {f.shape}")
    return np.mean(f, axis=0), np.cov(f, rowvar=False)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its singular-matrix warning (pytorch-fid calls it with ``disp=False``)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        out = linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
    """Frechet distance of two Gaussians with pytorch-fid's numerics (see module docstring)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} / {mu2.shape}, "
                         f"{sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two sets of features ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*activation_statistics(features_a), *activation_statistics(features_b))


def fid(generated_frames, real_frames, *, model=None, size: int | None = FID_SIZE, device: str = "cpu") -> float:
    """FID between two collections of frames (uint8 RGB); ``model`` defaults to :func:`load_inception`."""
    model = model or load_inception(device=device)
    return fid_from_features(inception_features(generated_frames, model, size=size, device=device),
                             inception_features(real_frames, model, size=size, device=device))
