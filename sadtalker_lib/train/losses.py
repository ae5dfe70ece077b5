"""The training losses of ExpNet and PoseVAE (paper supp. B.3, Eq. 3-13), one function per term.

ExpNet (Eq. 10):  L_exp  = lambda_distill L_distill + lambda_read L_read + lambda_lks L_lks
                  L_lks  = lambda_eye L_eye + mean over frames and non-eye landmarks of ||P - P'||^2     (Eq. 8)
PoseVAE (Eq. 13): L_pose = lambda_MSE L_MSE + lambda_KL L_KL + lambda_GAN L_GAN

The weights live in the stage configs (``expnet.py``, ``posevae.py``); these functions only compute the terms.
Landmarks come from the differentiable projection R_d (``morphable.render.project_landmarks``) and the eye
aspect ratio R_t of Eq. 4-6 from ``morphable.render.eye_aspect_ratio``.

Reductions (the paper writes 1/T sums; where it leaves the rest open we choose and say so):
means over batch and coefficients for L_distill / L_MSE, a sum over the window's frames for L_eye (as printed),
a mean over latent dimensions for L_KL, least squares for L_GAN (the official ``Audio2Pose`` builds
``gan_criterion = nn.MSELoss()``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..morphable.render import eye_aspect_ratio

__all__ = [
    "EYE_LANDMARKS",
    "NON_EYE_LANDMARKS",
    "distill_loss",
    "eye_ratio",
    "blink_target_ratio",
    "eye_loss",
    "landmark_loss",
    "read_loss",
    "expnet_total",
    "mse_loss",
    "kl_loss",
    "gan_generator_loss",
    "gan_discriminator_loss",
    "pose_total",
]

EYE_LANDMARKS = tuple(range(36, 48))  # iBUG-68 eyes (supp. Fig. B12): excluded from the landmark term of Eq. 8
NON_EYE_LANDMARKS = tuple(i for i in range(68) if i not in EYE_LANDMARKS)  # the set M of Eq. 8


# ---------------------------------------------------------------------------------------------
# ExpNet
# ---------------------------------------------------------------------------------------------
def distill_loss(exp_pred: torch.Tensor, exp_lip: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L_distill = 1/T sum_t (beta^g_t - beta^lip_t)^2; [B, T, 64] each -> scalar (mean over everything)."""
    return F.mse_loss(exp_pred, exp_lip)


def eye_ratio(landmarks: torch.Tensor) -> torch.Tensor:
    """Eq. 4-6: R_t = E^h_t / E^w_t; landmarks [..., 68, 2] -> [...] (``morphable.render.eye_aspect_ratio``)."""
    return eye_aspect_ratio(landmarks)


def blink_target_ratio(z_blink: torch.Tensor, open_ratio: torch.Tensor) -> torch.Tensor:
    """The eye ratio that the blink signal asks for: R_open (1 - z); z [B, T] in [0, 1], R_open [B, 1] -> [B, T].

    Eq. 7 compares R_t with Z^blink_t directly. The signal used at inference (``sadtalker_lib.blink``, official
    ``generate_blink_seq_randomly``) means 0 = eyes as in the reference and 1 = closed, so we compare R_t with
    the reference face's open-eye ratio scaled by (1 - z): the same loss with the two ends in the same units.
    """
    return open_ratio * (1.0 - z_blink)


def eye_loss(ratio: torch.Tensor, target_ratio: torch.Tensor) -> torch.Tensor:
    """Eq. 7: L_eye = sum_t |R_t - Z^blink_t| (L1 summed over a window's T frames); [B, T] -> scalar (batch mean)."""
    return (ratio - target_ratio).abs().sum(dim=1).mean()


def landmark_loss(lm_pred: torch.Tensor, lm_lip: torch.Tensor, ratio: torch.Tensor, target_ratio: torch.Tensor,
                  lambda_eye: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8: L_lks = lambda_eye L_eye + 1/T 1/|M| sum_t sum_{i in M} ||P^i_t - P^i'_t||^2.

    lm_pred [B, T, 68, 2] from the generated beta, lm_lip [B, T, 68, 2] from the lip-only beta (P'), M the
    landmarks outside the eyes (``NON_EYE_LANDMARKS``); ratio / target_ratio [B, T] (Eq. 4-7).
    Returns (L_lks, L_eye).
    """
    m = list(NON_EYE_LANDMARKS)
    l_eye = eye_loss(ratio, target_ratio)
    l_pts = (lm_pred[..., m, :] - lm_lip[..., m, :]).pow(2).sum(-1).mean()
    return lambda_eye * l_eye + l_pts, l_eye


def read_loss(logits_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 9: L_read = CrossEntropy(C_gt, C_p).

    logits_pred [N, K] (C_p: the lip reader on the generated mouth); target either class ids [N] (long: the
    labels of the audio) or the ground-truth logits [N, K] (C_gt; then the soft cross-entropy with softmax(C_gt)).
    """
    if not target.is_floating_point():
        return F.cross_entropy(logits_pred, target.long())
    return -(target.softmax(-1) * logits_pred.log_softmax(-1)).sum(-1).mean()


def expnet_total(l_distill: torch.Tensor, l_read: torch.Tensor | float, l_lks: torch.Tensor | float, *,
                 lambda_distill: float, lambda_read: float, lambda_lks: float) -> torch.Tensor:
    """Eq. 10: L_exp = lambda_distill L_distill + lambda_read L_read + lambda_lks L_lks."""
    return lambda_distill * l_distill + lambda_read * l_read + lambda_lks * l_lks


# ---------------------------------------------------------------------------------------------
# PoseVAE
# ---------------------------------------------------------------------------------------------
def mse_loss(motion_pred: torch.Tensor, motion_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 11: L_MSE = 1/T sum_t (Delta rho'_t - Delta rho_t)^2; [B, T, 6] each -> scalar (mean)."""
    return F.mse_loss(motion_pred, motion_gt)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L_KL (supp. B.3, after Eq. 11): KL(N(mu, diag exp(logvar)) || N(0, I)); [B, 64] each -> scalar.

    -1/2 (1 + logvar - mu^2 - exp(logvar)), averaged over batch AND latent dimensions (the paper gives no
    reduction; a per-dimension mean keeps lambda_KL = 1 from swamping the small pose residuals).
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def gan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 12, generator side (least squares): mean (D(G(.)) - 1)^2 over the patch scores [B, T/4]."""
    return (d_fake - 1).pow(2).mean()


def gan_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 12, discriminator side (least squares): 1/2 [mean (D(real) - 1)^2 + mean D(fake)^2]."""
    return 0.5 * ((d_real - 1).pow(2).mean() + d_fake.pow(2).mean())


def pose_total(l_mse: torch.Tensor, l_kl: torch.Tensor, l_gan: torch.Tensor | float, *, lambda_mse: float,
               lambda_kl: float, lambda_gan: float) -> torch.Tensor:
    """Eq. 13: L_pose = lambda_MSE L_MSE + lambda_KL L_KL + lambda_GAN L_GAN."""
    return lambda_mse * l_mse + lambda_kl * l_kl + lambda_gan * l_gan
