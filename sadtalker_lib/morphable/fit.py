"""Fit the face model to 68 landmarks: one image, a batch of images, or a whole video (shared identity).

    image ──detect 68 (dlib)──► align_img (224 crop, official) ──► targets [B, 68, 2] (x, row at 224)
          ──Adam on (angle, trans, alpha, beta), loss = landmark px^2 + priors (+ temporal smoothness)──►
    FitResult: coefficients in the official 257 / 70 / 73 layouts, the landmark error per iteration

The 224 crop is the one the official coefficient regressor sees (``face.align.align_img``, rescale factor
102), so fitted coefficients live in the same camera frame as the official ones: the 73 layout appends the
crop parameters (s, tx, ty) = ``trans_params[2:]`` exactly as ``CropAndExtract.generate`` does. The fit
only sees landmarks, so texture and lighting stay 0 (the official default light) in the 257 layout.

Loss per image (mean over the 68 landmarks, optional per-landmark weights):
    L = mean_i w_i ||P_i(alpha, beta, r, t) - Q_i||^2  +  lambda_id ||alpha||^2  +  lambda_exp ||beta||^2
and for a video (alpha shared by all frames) plus
    lambda_smooth * mean_t ( ||beta_t - beta_{t-1}||^2 + (100 ||r_t - r_{t-1}||)^2 + (100 ||t_t - t_{t-1}||)^2 )
(a rotation of 0.01 rad or a shift of 0.01 units moves the landmarks by about 1 px at 224, hence the 100).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from ..landmarks import CHIN_LANDMARKS, MOUTH_LANDMARKS
from .model import (ANGLE_DIM, EXP_DIM, ID_DIM, TRANS_DIM, MorphableModel, coeffs_70, coeffs_73, coeffs_257,
                    official_image_rows, split_coeff)

__all__ = [
    "FitConfig",
    "FitResult",
    "default_model",
    "align_for_fit",
    "crop_to_image",
    "fit_landmarks",
    "fit_image",
    "fit_images",
    "fit_video",
    "MOUTH_LANDMARKS",
    "CHIN_LANDMARKS",
    "fit_mouth",
]


@functools.lru_cache(maxsize=1)
def default_model() -> MorphableModel:
    """The shared offline stand-in (``default.DefaultMorphableModel``), built once per process."""
    from .default import DefaultMorphableModel

    return DefaultMorphableModel()


@dataclass
class FitConfig:
    """Optimisation settings (defaults tuned on the stand-in model with dlib landmarks at 224 px).

    iterations: Adam steps in total; the first ``rigid_iterations`` move only pose and translation.
    lr_pose / lr_coeff: Adam step sizes for (angle [rad], trans [units]) and for (alpha, beta).
    id_weight / exp_weight: lambda_id, lambda_exp on the squared coefficient norms (px^2 per unit^2).
    smooth_weight: lambda_smooth (video only). landmark_weights: None or [68] weights w_i.
    fit_identity / fit_expression: switch groups off (they then stay at 0, or at ``init`` values).
    """

    iterations: int = 250
    rigid_iterations: int = 50
    lr_pose: float = 0.01
    lr_coeff: float = 0.05
    id_weight: float = 0.05
    exp_weight: float = 0.05
    smooth_weight: float = 0.1
    landmark_weights: tuple[float, ...] | None = None
    fit_identity: bool = True
    fit_expression: bool = True
    progress: bool = False


@dataclass
class FitResult:
    """Fitted coefficients and diagnostics for B images (or the T frames of a video).

    coeffs_257 [B, 257] (tex and gamma 0), coeffs_70 [B, 70], coeffs_73 [B, 73] (crop params (s, tx, ty) of
    the 224 alignment; zeros when the targets were given directly), all float32.
    landmarks / target [B, 68, 2]: fitted and target landmarks in (x, row) pixels of the 224 crop.
    error_px [B]: final mean landmark distance per image. history_px [iterations]: mean over all images
    after each iteration (what a notebook plots). trans_params [B, 5] and crops [B, 224, 224, 3] when the
    fit started from images.
    """

    coeffs_257: np.ndarray
    coeffs_70: np.ndarray
    coeffs_73: np.ndarray
    landmarks: np.ndarray
    target: np.ndarray
    error_px: np.ndarray
    history_px: np.ndarray
    history_loss: np.ndarray
    model_name: str
    trans_params: np.ndarray | None = None
    crops: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def mean_error_px(self) -> float:
        return float(self.error_px.mean())

    @property
    def identity(self) -> np.ndarray:
        """alpha [B, 80] (identical rows for a video fit)."""
        return self.coeffs_257[:, :ID_DIM]

    @property
    def expression(self) -> np.ndarray:
        return self.coeffs_70[:, :EXP_DIM]


# ---------------------------------------------------------------------------------------------
# Images -> 224-px targets (the official alignment) and back
# ---------------------------------------------------------------------------------------------
def _detect(image: np.ndarray, detector=None) -> np.ndarray:
    from ..face.detect import detect_landmarks

    return detect_landmarks(image, detector)


def align_for_fit(image, landmarks: np.ndarray | None = None, detector=None):
    """One photo -> (targets [68, 2] (x, row) in the 224 crop, trans_params [5], crop uint8 [224, 224, 3]).

    ``landmarks`` [68, 2] (x, row) in the photo; detected with dlib when None (``NoFaceError`` if none).
    """
    from ..face.align import align_img, flip_y
    from ..face.detect import load_image

    img = load_image(image)
    lm = _detect(img, detector) if landmarks is None else np.asarray(landmarks, np.float32)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be [68, 2] (x, row), got {lm.shape}")
    aligned = align_img(img, flip_y(lm, img.shape[0]))  # the official y-up convention
    size = aligned.image.shape[0]
    target = np.stack([aligned.landmarks[:, 0], official_image_rows(aligned.landmarks[:, 1], size)], 1)
    return target.astype(np.float32), aligned.trans_params, aligned.image


def crop_to_image(points: np.ndarray, trans_params: np.ndarray, crop_size: int = 224) -> np.ndarray:
    """Map (x, row) pixels of the 224 crop back to (x, row) pixels of the original photo.

    Inverts ``face.align.resize_and_crop``'s landmark map: with (w0, h0, s, tx, ty) = trans_params,
    w = int(w0 s), h = int(h0 s) and y up, p_crop = (p - t + (w0, h0) / 2) s - ((w, h) - crop) / 2.
    """
    w0, h0, s, tx, ty = (float(v) for v in trans_params)
    w, h = int(w0 * s), int(h0 * s)
    p = np.asarray(points, np.float64)
    x_c, y_c = p[..., 0], official_image_rows(p[..., 1], crop_size)  # y up in the crop
    x = (x_c + (w / 2 - crop_size / 2)) / s + tx - w0 / 2
    y_up = (y_c + (h / 2 - crop_size / 2)) / s + ty - h0 / 2
    return np.stack([x, h0 - 1 - y_up], -1)


# ---------------------------------------------------------------------------------------------
# The optimisation
# ---------------------------------------------------------------------------------------------
def _initial_pose(model: MorphableModel, target_v: torch.Tensor) -> torch.Tensor:
    """Closed-form translation [B, 3] that centres and scales the mean landmarks onto the targets (v up)."""
    cam = model.camera
    mean_lm = model.mean_landmarks  # [68, 3]
    size_model = (mean_lm[:, :2] - mean_lm[:, :2].mean(0)).norm(dim=-1).mean()  # units
    size_target = (target_v - target_v.mean(1, keepdim=True)).norm(dim=-1).mean(1)  # px
    depth = cam.focal * size_model / size_target.clamp_min(1e-3)  # camera distance that gives that size
    tz = cam.distance - depth - mean_lm[:, 2].mean()
    centre = (target_v.mean(1) - cam.center) * depth[:, None] / cam.focal  # where the mean lm must be (x, y)
    txy = centre - mean_lm[:, :2].mean(0)
    return torch.cat([txy, tz[:, None]], 1)


def fit_landmarks(
    target: np.ndarray,
    model: MorphableModel | None = None,
    config: FitConfig | None = None,
    *,
    video: bool = False,
    crop_params: np.ndarray | None = None,
    init: dict[str, np.ndarray] | None = None,
) -> FitResult:
    """Fit to targets [B, 68, 2] (x, row) in the camera image (224) -> :class:`FitResult`.

    video: the B rows are consecutive frames of one clip: one identity for all, plus temporal smoothness.
    crop_params [B, 3]: (s, tx, ty) for the 73 layout. init: optional starting values
    {"id": [B|1, 80], "exp": [B, 64], "angle": [B, 3], "trans": [B, 3]}.
    """
    model = model or default_model()
    cfg = config or FitConfig()
    tgt = torch.as_tensor(np.asarray(target, np.float32))
    if tgt.ndim == 2:
        tgt = tgt[None]
    if tgt.ndim != 3 or tgt.shape[1:] != (68, 2):
        raise ValueError(f"target landmarks must be [B, 68, 2], got {tuple(tgt.shape)}")
    if not torch.isfinite(tgt).all():
        raise ValueError("target landmarks contain NaN or inf")
    b = tgt.shape[0]
    dev = model.mean_shape.device
    size = model.camera.image_size
    tgt_v = torch.stack([tgt[..., 0], official_image_rows(tgt[..., 1], size)], -1).to(dev)  # v up
    w = torch.ones(68) if cfg.landmark_weights is None else torch.as_tensor(cfg.landmark_weights, dtype=torch.float32)
    if w.shape != (68,):
        raise ValueError(f"landmark_weights must have 68 values, got {tuple(w.shape)}")
    w = (w / w.mean()).to(dev)
    init = init or {}

    def param(name, shape, default):
        v = torch.as_tensor(np.asarray(init[name], np.float32)).to(dev).expand(*shape) if name in init else default
        return v.clone().requires_grad_(True)

    trans = param("trans", (b, TRANS_DIM), _initial_pose(model, tgt_v).detach())
    angle = param("angle", (b, ANGLE_DIM), torch.zeros(b, ANGLE_DIM, device=dev))
    n_id = 1 if video else b
    alpha = param("id", (n_id, ID_DIM), torch.zeros(n_id, ID_DIM, device=dev))
    beta = param("exp", (b, EXP_DIM), torch.zeros(b, EXP_DIM, device=dev))
    pose_opt = torch.optim.Adam([angle, trans], lr=cfg.lr_pose)
    coeff_params = ([alpha] if cfg.fit_identity else []) + ([beta] if cfg.fit_expression else [])
    coeff_opt = torch.optim.Adam(coeff_params, lr=cfg.lr_coeff) if coeff_params else None
    n_free = max(cfg.iterations - cfg.rigid_iterations, 1)
    def cosine(i: int) -> float:  # cosine decay from 1 to 0.05 over the free iterations
        return 0.5 * (1 + np.cos(np.pi * min(i, n_free) / n_free)) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(coeff_opt, cosine) if coeff_opt else None

    def losses():
        lm = model.project_landmarks(alpha.expand(b, ID_DIM), beta, angle, trans)  # [B, 68, 2]
        d2 = ((lm - tgt_v) ** 2).sum(-1)  # [B, 68]
        data = (d2 * w).mean(1)  # [B]
        prior = cfg.id_weight * (alpha**2).sum(1).expand(b) / (b if video else 1) + cfg.exp_weight * (beta**2).sum(1)
        total = data.sum() + prior.sum()
        if video and b > 1:
            smooth = ((beta[1:] - beta[:-1]) ** 2).sum(1) + (100 * (angle[1:] - angle[:-1])) .pow(2).sum(1) \
                + (100 * (trans[1:] - trans[:-1])).pow(2).sum(1)
            total = total + cfg.smooth_weight * smooth.sum()
        return total, lm, d2

    history_px, history_loss = [], []
    with _single_thread():
        _optimise(cfg, losses, pose_opt, coeff_opt, sched, history_px, history_loss, b, video)
    with torch.no_grad():
        _, lm, d2 = losses()
        err = d2.sqrt().mean(1)
        c257 = coeffs_257(exp=beta, angle=angle, trans=trans, id=alpha.expand(b, ID_DIM)).detach()
        crop = (torch.zeros(b, 3) if crop_params is None
                else torch.as_tensor(np.asarray(crop_params, np.float32)).reshape(b, 3))
        result = FitResult(
            coeffs_257=c257.cpu().numpy(),
            coeffs_70=coeffs_70(c257).cpu().numpy(),
            coeffs_73=coeffs_73(c257, crop.to(c257)).cpu().numpy(),
            landmarks=torch.stack([lm[..., 0], official_image_rows(lm[..., 1], size)], -1).cpu().numpy(),
            target=tgt.cpu().numpy(),
            error_px=err.cpu().numpy(),
            history_px=np.asarray(history_px, np.float32),
            history_loss=np.asarray(history_loss, np.float32),
            model_name=model.name,
        )
    return result


@contextlib.contextmanager
def _single_thread():
    """The landmark problem is tiny (68 points): torch's thread pool only adds overhead (20x slower on a busy
    2-core machine), so the optimisation runs on one thread and the caller's setting is restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _optimise(cfg, losses, pose_opt, coeff_opt, sched, history_px, history_loss, b, video):
    steps = range(cfg.iterations)
    if cfg.progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"fitting {b} {'frames' if video else 'images'}")
    for it in steps:
        rigid = it < cfg.rigid_iterations
        pose_opt.zero_grad()
        if coeff_opt:
            coeff_opt.zero_grad()
        total, lm, d2 = losses()
        total.backward()
        pose_opt.step()
        if coeff_opt and not rigid:
            coeff_opt.step()
            sched.step()
        with torch.no_grad():
            history_px.append(float(d2.sqrt().mean()))
            history_loss.append(float(total) / b)


def fit_images(images, model: MorphableModel | None = None, config: FitConfig | None = None, *,
               landmarks=None, detector=None) -> FitResult:
    """Several photos (each aligned to its own 224 crop), fitted in one batch, each with its own identity."""
    prepared = [align_for_fit(img, None if landmarks is None else landmarks[i], detector)
                for i, img in enumerate(images)]
    return _fit_prepared(prepared, model, config, video=False)


def fit_image(image, model: MorphableModel | None = None, config: FitConfig | None = None, *,
              landmarks: np.ndarray | None = None, detector=None) -> FitResult:
    """One photo (path, array or PIL image) -> :class:`FitResult` with B = 1."""
    return fit_images([image], model, config, landmarks=None if landmarks is None else [landmarks], detector=detector)


def fit_video(frames, model: MorphableModel | None = None, config: FitConfig | None = None, *,
              landmarks=None, detector=None) -> FitResult:
    """Frames [T, H, W, 3] (or a list) of one person -> per-frame expression and pose, one shared identity.

    Each frame is aligned to its own 224 crop, as the official pipeline does for reference videos; a frame
    without a face raises ``NoFaceError`` naming it.
    """
    from ..face.detect import NoFaceError

    prepared = []
    for t, frame in enumerate(frames):
        try:
            prepared.append(align_for_fit(frame, None if landmarks is None else landmarks[t], detector))
        except NoFaceError as e:
            raise NoFaceError(f"frame {t}: {e}") from e
    if not prepared:
        raise ValueError("fit_video needs at least one frame")
    return _fit_prepared(prepared, model, config, video=True)


def _fit_prepared(prepared, model, config, video: bool) -> FitResult:
    target = np.stack([p[0] for p in prepared])
    trans_params = np.stack([p[1] for p in prepared])
    result = fit_landmarks(target, model, config, video=video, crop_params=trans_params[:, 2:5])
    result.trans_params = trans_params
    result.crops = np.stack([p[2] for p in prepared])
    return result


# ---------------------------------------------------------------------------------------------
# Lip-only refit (the offline stand-in for Wav2Lip + R_e)
# ---------------------------------------------------------------------------------------------


def fit_mouth(full: FitResult, mouth_dims, model: MorphableModel | None = None, *, iterations: int = 100,
              lr: float = 0.05, exp_weight: float = 0.05, smooth_weight: float = 0.1,
              reference_frame: int = 0) -> FitResult:
    """Lip-only expression of a video fit: only the mouth moves, everything else stays at the reference frame.

    The paper's lip-only target (Sec. 3.1, Eq. 3) is R_e applied to Wav2Lip's re-synthesis of the FIRST frame:
    a video in which the mouth follows the audio and identity, head pose and every non-mouth expression stay as
    in frame 0. Offline stand-in: the real video already has the mouth of each frame, so the mouth is re-read
    from it with everything else frozen:

        beta^lip_t[d] = beta_ref[d]     for d not in ``mouth_dims`` (brows, eyes, cheeks: frame 0's values)
        beta^lip_t[m] = argmin  sum_{i in lips + chin} ||P_i(alpha, beta^lip_t, r_t, t_t) - Q_{t,i}||^2
                                + exp_weight ||beta^lip_t[m]||^2 + smooth_weight ||beta^lip_t[m] - beta^lip_{t-1}[m]||^2

    with alpha the clip's shared identity, Q_t the frame's targets and (r_t, t_t) the frame's fitted pose from
    ``full`` (``fit_video``). The pose is used only to read the mouth shape of frame t in the model's own frame
    (a mouth shape does not depend on where the head points), so the result is the expression Wav2Lip + R_e
    would give with the head held at frame 0; eye blinks and brow motion cannot leak into it, because only the
    lip and chin landmarks enter the loss and the other dimensions are frozen.

    full: a ``fit_video`` result [T frames]. mouth_dims: the expression indices that move the mouth.
    Returns a :class:`FitResult` whose ``expression`` [T, 64] is beta^lip (pose columns: the per-frame pose it
    was read through; identity: ``full``'s); ``error_px`` [T] is the mean lip + chin landmark error at 224 px
    and ``extra`` holds ``mouth_dims`` and ``reference_frame``.
    """
    model = model or default_model()
    dims = torch.as_tensor(sorted({int(d) for d in mouth_dims}), dtype=torch.long)
    if len(dims) == 0 or int(dims.min()) < 0 or int(dims.max()) >= EXP_DIM:
        raise ValueError(f"mouth_dims must be indices in [0, {EXP_DIM}), got {list(mouth_dims)}")
    dev = model.mean_shape.device
    c = split_coeff(torch.as_tensor(np.asarray(full.coeffs_257, np.float32)).to(dev))
    b = c["exp"].shape[0]
    if not 0 <= reference_frame < b:
        raise ValueError(f"reference_frame {reference_frame} is outside the {b} fitted frames")
    points = torch.as_tensor(MOUTH_LANDMARKS + CHIN_LANDMARKS, dtype=torch.long)
    tgt = torch.as_tensor(np.asarray(full.target, np.float32)).to(dev)
    size = model.camera.image_size
    tgt_v = torch.stack([tgt[..., 0], official_image_rows(tgt[..., 1], size)], -1)[:, points]  # [T, P, 2] v up
    base = c["exp"][reference_frame].expand(b, EXP_DIM).clone()  # [T, 64]: frame 0 everywhere
    mouth = c["exp"][:, dims].clone().requires_grad_(True)  # warm start: the full fit's mouth [T, M]
    alpha, angle, trans = c["id"], c["angle"], c["trans"]
    opt = torch.optim.Adam([mouth], lr=lr)

    def losses():
        exp = base.index_copy(1, dims, mouth)
        lm = model.project_landmarks(alpha, exp, angle, trans)  # [T, 68, 2]
        d2 = ((lm[:, points] - tgt_v) ** 2).sum(-1)  # [T, P]
        total = d2.mean(1).sum() + exp_weight * (mouth**2).sum()
        if b > 1:
            total = total + smooth_weight * ((mouth[1:] - mouth[:-1]) ** 2).sum()
        return total, exp, lm, d2

    history_px, history_loss = [], []
    with _single_thread():
        for _ in range(iterations):
            opt.zero_grad()
            total, _, _, d2 = losses()
            total.backward()
            opt.step()
            history_px.append(float(d2.detach().sqrt().mean()))
            history_loss.append(float(total.detach()) / b)
        with torch.no_grad():
            _, exp, lm, d2 = losses()
            c257 = coeffs_257(exp=exp, angle=angle, trans=trans, id=alpha)
            crop = torch.as_tensor(np.asarray(full.coeffs_73, np.float32)[:, -3:])
            return FitResult(
                coeffs_257=c257.cpu().numpy(), coeffs_70=coeffs_70(c257).cpu().numpy(),
                coeffs_73=coeffs_73(c257, crop.to(c257)).cpu().numpy(),
                landmarks=torch.stack([lm[..., 0], official_image_rows(lm[..., 1], size)], -1).cpu().numpy(),
                target=np.asarray(full.target, np.float32), error_px=d2.sqrt().mean(1).cpu().numpy(),
                history_px=np.asarray(history_px, np.float32), history_loss=np.asarray(history_loss, np.float32),
                model_name=model.name, trans_params=full.trans_params,
                extra={"mouth_dims": dims.tolist(), "reference_frame": int(reference_frame)})
