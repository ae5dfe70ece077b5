"""The people of the default corpus: real portraits shipped by installed packages, and variants of them.

Real photos available offline (no download): scikit-image's ``data.astronaut()`` (Eileen Collins) and
matplotlib's ``grace_hopper.jpg`` sample (Grace Hopper), both public domain (:data:`REAL_PORTRAITS`).

Identity variants go through the face model (``DefaultMorphableModel``, a STAND-IN for the BFM): a variant draws
identity coefficients alpha [80] (face width, jaw, nose, eyes, mouth, ... and generic shape fields) and texture
coefficients [80] (skin brightness, redness, yellowness), moves the photo's 68 landmarks by the model's landmark
displacement ``project(alpha) - project(0)`` (scaled from the model's 224 px camera to the photo by the eye
distance, as ``render.PortraitAnimator`` does for expressions), warps the photo along (piecewise affine) and
tints the face by the texture coefficients' mean colour. A variant is a different face shape on the same photo:
an offline stand-in for more people, labelled ``<photo>~v<k>`` in the corpus index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..coeffs import ID_DIM, TEX_DIM

__all__ = ["REAL_PORTRAITS", "IdentityDraw", "IdentitySpec", "real_portrait_image", "draw_identity",
           "identity_portrait", "identity_specs"]

# name -> where the photo comes from (module.function / package sample file); loaded by real_portrait_image
REAL_PORTRAITS: dict[str, str] = {
    "astronaut": "skimage.data.astronaut()",
    "grace_hopper": "matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
}
N_DESIGNED_ID = 16  # the DefaultMorphableModel's designed identity directions (IDENTITY_NAMES) come first
N_GLOBAL_TEX = 3  # its first texture directions: brightness, redness, yellowness (whole-face colour)
ID_STD_DESIGNED, ID_STD_GENERIC, TEX_STD = 1.5, 0.4, 0.35  # per unit of ``spread``


def real_portrait_image(name: str) -> np.ndarray:
    """uint8 [H, W, 3] of one of :data:`REAL_PORTRAITS`."""
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    raise ValueError(f"unknown real portrait {name!r}; choose one of {list(REAL_PORTRAITS)}")


@dataclass
class IdentityDraw:
    """Face-model coefficients of one identity variant: ``id_coeff`` float32 [80], ``tex_coeff`` float32 [80]."""

    id_coeff: np.ndarray
    tex_coeff: np.ndarray


def draw_identity(rng: np.random.Generator, spread: float = 1.0) -> IdentityDraw:
    """Random identity / texture coefficients; ``spread`` scales them (0 gives the photo's own face)."""
    ident = np.concatenate([rng.normal(0, ID_STD_DESIGNED, N_DESIGNED_ID),
                            rng.normal(0, ID_STD_GENERIC, ID_DIM - N_DESIGNED_ID)])
    tex = np.zeros(TEX_DIM)
    tex[:N_GLOBAL_TEX] = rng.normal(0, TEX_STD, N_GLOBAL_TEX)
    return IdentityDraw((spread * ident).astype(np.float32), (spread * tex).astype(np.float32))


def _landmark_shift(model, id_coeff: np.ndarray) -> np.ndarray:
    """Model landmarks [68, 2] (224 px, rows down) of identity ``id_coeff`` minus those of identity 0 (frontal)."""
    import torch

    from ..morphable.render import to_image_rows

    ident = torch.as_tensor(np.stack([np.zeros(ID_DIM, np.float32), id_coeff]))
    zeros = torch.zeros(2, 3)
    with torch.no_grad():
        lm = model.project_landmarks(ident, torch.zeros(2, model.exp_base.shape[1]), zeros, zeros)
    lm = to_image_rows(lm.numpy(), model.camera.image_size)
    return (lm[1] - lm[0]).astype(np.float64)


def identity_portrait(portrait, draw: IdentityDraw, name: str, model=None):
    """A new ``render.Portrait``: ``portrait`` with the face shape of ``draw.id_coeff`` and the tint of
    ``draw.tex_coeff`` (see the module docstring)."""
    import cv2

    from .render import Portrait, PortraitAnimator

    anim = PortraitAnimator(portrait, model=model, close_mouth=False)
    lm = portrait.landmarks.astype(np.float64) + anim.px_per_model_px * _landmark_shift(anim.model, draw.id_coeff)
    image = anim.warp_to(lm).astype(np.float32)
    # colour: the mean RGB offset of the model's whole-face texture directions, inside a soft face mask
    tex_base = np.asarray(anim.model.tex_base, np.float64).reshape(-1, 3, TEX_DIM)  # [N, 3 (RGB), 80]
    rgb = (tex_base.mean(0) @ draw.tex_coeff.astype(np.float64))  # [3], 0-255 units
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm).astype(np.int32)), 255)
    k = max(3, int(0.08 * image.shape[0]) | 1)
    soft = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32)[..., None] / 255
    image = np.clip(image + soft * rgb[None, None].astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    return Portrait(image=image, landmarks=lm.astype(np.float32), name=name)


@dataclass
class IdentitySpec:
    """One person of the corpus: ``photo`` (index into the photo list), ``variant`` (0 = the photo's own face) and
    the face-model coefficients of a variant (``draw``; None for the photo itself)."""

    name: str
    photo: int
    variant: int
    draw: IdentityDraw | None = None

    def describe(self) -> dict:
        out = dict(name=self.name, photo=self.photo, variant=self.variant)
        if self.draw is not None:
            out.update(id_coeff_norm=round(float(np.linalg.norm(self.draw.id_coeff)), 3),
                       tex_coeff_norm=round(float(np.linalg.norm(self.draw.tex_coeff)), 3))
        return out


def identity_specs(photo_names: list[str], n_variants: int, spread: float = 1.0, seed: int = 0) -> list[IdentitySpec]:
    """The corpus' people: each photo, then ``n_variants`` face-model variants of each, interleaved by photo (so a
    small corpus gets every photo first); variant coefficients drawn from ``seed``."""
    specs = [IdentitySpec(name, k, 0) for k, name in enumerate(photo_names)]
    for v in range(1, int(n_variants) + 1):
        for k, name in enumerate(photo_names):
            draw = draw_identity(np.random.default_rng([int(seed), k, v, 0x1D]), spread)
            specs.append(IdentitySpec(f"{name}~v{v}", k, v, draw))
    return specs
