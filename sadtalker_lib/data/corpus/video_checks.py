"""Sanity checks of a video corpus: do the stored coefficients reproduce the stored landmarks?

:func:`landmark_reprojection` re-derives the fit's 224-px targets from a clip's stored landmarks (the official
``align_img`` on the ``DETECT_SIZE`` crop they were detected on), projects the stored coefficients with the
face model and reports the mean landmark distance, beside two trivial baselines that keep the fitted pose but
drop the per-frame expression (frame 0's expression for every frame; the neutral face). Fitted coefficients that
track the landmarks score well below both; the lip-only target is scored on the lip and chin landmarks.
"""
from __future__ import annotations

import os

import numpy as np

from .format import load_clip, load_index
from .video_clip import DETECT_SIZE

__all__ = ["landmark_reprojection", "corpus_reprojection"]


def _project(model, id_coeff, exp, pose) -> np.ndarray:
    import torch

    from ...morphable.model import official_image_rows

    t = exp.shape[0]
    with torch.no_grad():
        v = model.project_landmarks(torch.as_tensor(id_coeff, dtype=torch.float32).expand(t, 80),
                                    torch.as_tensor(exp, dtype=torch.float32),
                                    torch.as_tensor(pose[:, :3], dtype=torch.float32),
                                    torch.as_tensor(pose[:, 3:], dtype=torch.float32))
        return torch.stack([v[..., 0], official_image_rows(v[..., 1], model.camera.image_size)], -1).numpy()


def landmark_reprojection(root: str | os.PathLike, clip: int | str | dict, index: dict | None = None) -> dict:
    """Mean landmark distances (px at the 224 alignment) of one fitted clip -> dict:

    fitted: the stored coefficients (all 68); frame0_expression / neutral_expression: the same pose with frame 0's
    / zero expression (baselines); mouth_fitted / mouth_lip_only / mouth_frame0: lip + chin landmarks with the
    real expression, the lip-only target ``exp_lip`` and frame 0's expression.
    """
    from ...landmarks import CHIN_LANDMARKS, MOUTH_LANDMARKS
    from ...morphable.fit import align_for_fit, default_model

    index = index or load_index(root)
    a = load_clip(root, clip)
    size = int(index["size"])
    blank = np.zeros((DETECT_SIZE, DETECT_SIZE, 3), np.uint8)
    target = np.stack([align_for_fit(blank, lm)[0] for lm in a["landmarks"] * (DETECT_SIZE / size)])
    model = default_model()
    coeffs = a["coeffs"]
    ident = a["id_coeff"] if "id_coeff" in a else np.zeros(80, np.float32)
    pose = coeffs[:, 64:70]
    exp0 = np.repeat(coeffs[:1, :64], len(coeffs), 0)
    mouth = list(MOUTH_LANDMARKS + CHIN_LANDMARKS)

    def err(exp, points=slice(None)):
        d = np.linalg.norm(_project(model, ident, exp, pose)[:, points] - target[:, points], axis=-1)
        return float(d.mean())

    return dict(fitted=err(coeffs[:, :64]), frame0_expression=err(exp0), neutral_expression=err(np.zeros_like(exp0)),
                mouth_fitted=err(coeffs[:, :64], mouth), mouth_lip_only=err(a["exp_lip"], mouth),
                mouth_frame0=err(exp0, mouth))


def corpus_reprojection(root: str | os.PathLike) -> dict:
    """:func:`landmark_reprojection` of every fitted clip -> {"clips": {id: dict}, "mean": dict (over clips)}."""
    index = load_index(root)
    per = {c["id"]: landmark_reprojection(root, c, index) for c in index["clips"] if c.get("coeffs_fitted")}
    keys = next(iter(per.values())).keys() if per else []
    return {"clips": per, "mean": {k: float(np.mean([v[k] for v in per.values()])) for k in keys}}
