"""Train the coefficient regressor (paper Sec. 3.1, R_e of Fig. 3) on coefficients fitted here.

The official regressor is Deep3DFaceRecon's ResNet-50, trained without 3-D labels by a photometric loss through a
differentiable renderer. When those weights are absent, this module trains one from the workbench's own fits:

    faces (portraits + augmentations | video frames | the default corpus)
      ──dlib 68 landmarks──► align_img (the official 224 crop) ──► morphable.fit ──► targets
    dataset: aligned crops [N, 224, 224, 3] uint8, fitted coefficients [N, 257], landmarks [N, 68, 2] (x, row)
    one step on a batch:
      c = R_e(crop / 255)                                                         [B, 257]
      L_coef = sum_g w_g mean (c_g - c*_g)^2          g in exp, angle, trans, id (tex, gamma: the fit has none)
      L_lm   = w_lm mean_i v_i ||R_d(c)_i - q_i||^2   (pixels at 224; R_d = render.project_landmarks)
      L      = L_coef + L_lm

R_d is the differentiable projection of the 68 model landmarks, q the detected (dlib) landmarks in the crop, so
the landmark term measures what a fit measures and lets the network trade coefficient errors that do not move
the face against those that do. ``w_lm`` and the landmark weights ``v`` (20 on the nose bridge and the inner
lips) are Deep3DFaceRecon's (``--w_lm 1.6e-3``, ``models/losses.py landmark_loss``), as is the zero start of the
output heads (``ReconNetWrapper``); here the head biases then start at the training set's mean coefficients.

Training data (:func:`build_regressor_data` picks from what it is given):

* :func:`regressor_data_from_images`: single portraits and augmentations of them: a random similarity (rotation,
  scale, shift) of the photo, colour jitter of the crop, a horizontal flip. The landmarks follow the same
  transform analytically (no second detection). After a flip the 68 points are re-indexed
  (:data:`LANDMARK_MIRROR`) and the sample is fitted again: a mirror has a closed form only for the pose
  (:func:`mirror_pose`: pitch kept, yaw, roll and tx negated); the expression and identity bases of a
  morphable model (the stand-in's generic directions, the BFM's PCA) are not mirror-symmetric.
* :func:`regressor_data_from_videos`: every k-th frame of talking-face videos (e.g. ``../shared/data/clips``),
  fitted per clip with one shared identity.
* :func:`regressor_data_from_corpus`: frames of a corpus folder (``data.corpus``; its stored landmarks are used).

Coefficients are those of the morphable model used for fitting (the offline ``DefaultMorphableModel`` by
default): a regressor trained here on the stand-in predicts stand-in coefficients, not BFM ones, and says so
in the ``sadtalker_lab.json`` written beside it. :func:`train_regressor` logs a CSV (train losses, held-out
landmark error in px at 224), writes resumable checkpoints in the official ``epoch_20.pth`` layout, and at the
end the ``face_3drecon`` section of ``SadTalker_V0.0.2_256.safetensors`` with the config
(``networks.save_networks``), so ``TalkingHeadPipeline.from_checkpoints`` / :func:`load_regressor` read it.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..models.regressor import CoefficientRegressor, RegressorConfig
from ..morphable.model import COEFF_257_SLICES, NUM_LANDMARKS
from .common import (
    CSVLogger,
    TrainConfig,
    TrainHistory,
    latest_checkpoint,
    list_checkpoints,
    progress,
    restore_training_state,
    save_training_checkpoint,
    step_generator,
    step_rng,
)

__all__ = [
    "LANDMARK_MIRROR",
    "DEEP3D_LANDMARK_WEIGHTS",
    "AugmentConfig",
    "RegressorData",
    "mirror_landmarks",
    "mirror_pose",
    "augment_portrait",
    "regressor_data_from_images",
    "regressor_data_from_videos",
    "regressor_data_from_corpus",
    "build_regressor_data",
    "split_regressor_data",
    "RegressorTrainConfig",
    "RegressorMetrics",
    "RegressorRun",
    "regressor_losses",
    "landmark_error_px",
    "evaluate_regressor",
    "evaluate_coefficients",
    "predict",
    "init_heads",
    "train_regressor",
    "save_regressor",
    "load_regressor",
]

NETWORK = "face_3drecon"
CKPT_STEM = "face_3drecon"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")

# iBUG-68 index of each point's mirror image (jaw 0-16 reversed, brows 17-21 <-> 26-22, nose bridge kept,
# nostrils 31-35 reversed, eyes 36-41 <-> 45-42 / 47-46, outer lips 48-54 reversed and 55-59 reversed, inner lips
# 60-64 reversed and 65-67 reversed).
LANDMARK_MIRROR: tuple[int, ...] = (
    tuple(range(16, -1, -1)) + tuple(range(26, 21, -1)) + tuple(range(21, 16, -1)) + (27, 28, 29, 30)
    + tuple(range(35, 30, -1)) + (45, 44, 43, 42, 47, 46) + (39, 38, 37, 36, 41, 40)
    + tuple(range(54, 47, -1)) + tuple(range(59, 54, -1)) + tuple(range(64, 59, -1)) + (67, 66, 65)
)
assert sorted(LANDMARK_MIRROR) == list(range(NUM_LANDMARKS))

# Deep3DFaceRecon models/losses.py landmark_loss: weight 20 on points 28-30 (nose bridge) and on the last 8
# (inner lips), 1 elsewhere; the loss is sum_i w_i ||p_i - q_i||^2 / (B * 68). Its default --w_lm is 1.6e-3.
DEEP3D_LANDMARK_WEIGHTS: tuple[float, ...] = tuple(20.0 if (28 <= i < 31 or i >= 60) else 1.0 for i in range(68))
DEEP3D_W_LM = 1.6e-3
DEEP3D_LR = 1e-4  # Deep3DFaceRecon options/train_options.py --lr


# ---------------------------------------------------------------------------------------------
# Geometry helpers: mirror, augmentation
# ---------------------------------------------------------------------------------------------
def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks [..., 68, 2] (x, row) of an image of ``width`` -> those of its horizontal mirror (re-indexed)."""
    lm = np.array(landmarks, np.float32, copy=True)
    lm[..., 0] = width - 1 - lm[..., 0]
    return lm[..., list(LANDMARK_MIRROR), :]


def mirror_pose(coeffs_257: np.ndarray) -> np.ndarray:
    """The pose part of a mirror, in closed form: pitch kept, yaw and roll negated, tx negated.

    Exact for a face model whose mean shape is symmetric; expression and identity are left as they are
    (they have no closed-form mirror), so use the result as a starting point, not as a target.
    """
    c = np.array(coeffs_257, np.float32, copy=True)
    a, t = COEFF_257_SLICES["angle"], COEFF_257_SLICES["trans"]
    c[..., a.start + 1] *= -1  # yaw
    c[..., a.start + 2] *= -1  # roll
    c[..., t.start] *= -1  # tx
    return c


@dataclass
class AugmentConfig:
    """Random augmentations of a portrait (:func:`augment_portrait`).

    copies: augmented samples per portrait (besides the original when ``include_original``).
    max_rotation_deg / scale_range / max_shift: the similarity of the photo about the face centre (shift as a
    fraction of the face size). flip_prob: chance of a horizontal mirror. brightness / contrast / saturation:
    colour jitter amplitudes (multiplicative, uniform in 1 +- a), applied to the aligned crop.
    """

    copies: int = 48
    include_original: bool = True
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25


def augment_portrait(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                     config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """One random similarity (+ maybe a mirror) of ``image`` uint8 [H, W, 3] with its landmarks [68, 2] (x, row).

    Returns (image, landmarks, flipped). Borders are filled by reflection, so no black wedge enters the crop.
    """
    import cv2

    cfg = config or AugmentConfig()
    h, w = image.shape[:2]
    lm = np.asarray(landmarks, np.float64)
    centre = lm.mean(0)
    face = float(np.linalg.norm(lm - centre, axis=1).mean()) * 2
    angle = rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)
    scale = rng.uniform(*cfg.scale_range)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    m[:, 2] += rng.uniform(-cfg.max_shift, cfg.max_shift, 2) * face
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    lm = lm @ m[:, :2].T + m[:, 2]
    flipped = bool(rng.random() < cfg.flip_prob)
    if flipped:
        out = np.ascontiguousarray(out[:, ::-1])
        lm = mirror_landmarks(lm, w)
    return out, lm.astype(np.float32), flipped


def _colour_jitter(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = crop.astype(np.float32)
    x = x * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = x.mean(-1, keepdims=True)
    x = (x - grey) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------------
@dataclass
class RegressorData:
    """Training samples for the regressor (all arrays share N).

    images uint8 [N, 224, 224, 3]: aligned crops (``face.align.align_img``); coeffs float32 [N, 257]: the fitted
    targets (tex and gamma 0); landmarks float32 [N, 68, 2]: the detected landmarks in the crop (x, row);
    fit_error_px [N]: how well the fit matches them (a floor for the regressor); groups int [N]: the source each
    sample comes from (a portrait, a clip), used for held-out splits; sources: their names; model_name: the
    morphable model the coefficients belong to.
    """

    images: np.ndarray
    coeffs: np.ndarray
    landmarks: np.ndarray
    fit_error_px: np.ndarray
    groups: np.ndarray
    sources: list[str] = field(default_factory=list)
    model_name: str = ""

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1:] != (224, 224, 3) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, 224, 224, 3], got {self.images.dtype} {self.images.shape}")
        for name, shape in (("coeffs", (n, 257)), ("landmarks", (n, 68, 2)), ("fit_error_px", (n,)), ("groups", (n,))):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "RegressorData":
        idx = np.asarray(index)
        idx = idx if idx.dtype == bool else idx.astype(np.int64)
        return RegressorData(self.images[idx], self.coeffs[idx], self.landmarks[idx], self.fit_error_px[idx],
                             self.groups[idx], list(self.sources), self.model_name)

    @staticmethod
    def concat(parts: Sequence["RegressorData"]) -> "RegressorData":
        """Join data sets (group ids are renumbered so sources stay apart)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("nothing to concatenate: every part is empty")
        names = {p.model_name for p in parts}
        if len(names) > 1:
            raise ValueError(f"cannot mix coefficients of different morphable models: {sorted(names)}")
        groups, sources, offset = [], [], 0
        for p in parts:
            groups.append(p.groups + offset)
            sources += p.sources
            offset += len(p.sources)
        cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
        return RegressorData(cat("images"), cat("coeffs"), cat("landmarks"), cat("fit_error_px"),
                             np.concatenate(groups), sources, parts[0].model_name)

    def save(self, path: str | os.PathLike) -> Path:
        """One ``.npz`` (no pickles)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=self.images, coeffs=self.coeffs, landmarks=self.landmarks,
                            fit_error_px=self.fit_error_px, groups=self.groups,
                            sources=np.asarray(self.sources, dtype=str), model_name=np.asarray(self.model_name))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RegressorData":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["images"], z["coeffs"], z["landmarks"], z["fit_error_px"], z["groups"],
                       [str(s) for s in z["sources"]], str(z["model_name"]))


def _empty_error(what: str, n: int, examples: list[str]):
    from ..face.detect import NoFaceError

    shown = "; ".join(examples[:3])
    return NoFaceError(
        f"no face found in any of the {n} {what} given for regressor training ({shown}). The regressor learns "
        "from aligned face crops: give portraits or talking-face videos in which dlib finds a frontal face."
    )


def _fit_groups(prepared: list[dict], model, fit_config) -> list[dict]:
    """Fit each group of prepared samples in one batch with one identity (``fit_landmarks(video=True)``)."""
    from ..morphable.fit import FitConfig, fit_landmarks

    # default: no temporal smoothness (augmentations and every-k-th frames are not consecutive frames)
    cfg = fit_config or FitConfig(smooth_weight=0.0)
    by_group: dict = {}
    for p in prepared:
        by_group.setdefault(p["fit_group"], []).append(p)
    for items in by_group.values():
        r = fit_landmarks(np.stack([p["target"] for p in items]), model, cfg, video=True)
        for p, c, e in zip(items, r.coeffs_257, r.error_px):
            p["coeffs"], p["error"] = c, float(e)
        model_name = r.model_name
    for p in prepared:
        p["model_name"] = model_name
    return prepared


def _to_data(prepared: list[dict], sources: list[str]) -> RegressorData:
    return RegressorData(
        images=np.stack([p["crop"] for p in prepared]),
        coeffs=np.stack([p["coeffs"] for p in prepared]).astype(np.float32),
        landmarks=np.stack([p["target"] for p in prepared]).astype(np.float32),
        fit_error_px=np.asarray([p["error"] for p in prepared], np.float32),
        groups=np.asarray([p["group"] for p in prepared], np.int64),
        sources=sources,
        model_name=prepared[0]["model_name"],
    )


def regressor_data_from_images(images: Sequence, *, augment: AugmentConfig | int | None = None, seed: int = 0,
                               detector=None, model=None, fit_config=None, show_progress: bool = False,
                               names: Sequence[str] | None = None) -> RegressorData:
    """Portraits (paths or uint8 arrays) and random augmentations of each -> :class:`RegressorData`.

    augment: an :class:`AugmentConfig`, or the number of augmented copies per portrait (0: originals only;
    None: the default config). Landmarks are detected once per portrait (dlib) and carried through each
    augmentation. Each portrait's unflipped and flipped samples are fitted with one shared identity.
    Portraits without a face are skipped with a warning; if none has one: ``NoFaceError``.
    """
    from ..face.detect import NoFaceError, detect_landmarks, load_image
    from ..morphable.fit import align_for_fit, default_model

    if isinstance(augment, int):
        augment = AugmentConfig(copies=augment)
    cfg = augment or AugmentConfig()
    model = model or default_model()
    images = list(images)
    if not images:
        raise ValueError("regressor_data_from_images needs at least one image")
    names = list(names) if names is not None else [
        Path(im).name if isinstance(im, (str, os.PathLike)) else f"image{k}" for k, im in enumerate(images)]
    rng = np.random.default_rng(seed)
    prepared, sources, failed = [], [], []
    for k, im in enumerate(progress(images, show_progress, desc="portraits")):
        img = load_image(im)
        try:
            lm = detect_landmarks(img, detector)
        except NoFaceError as e:
            failed.append(f"{names[k]}: {e}")
            continue
        g = len(sources)
        sources.append(names[k])
        variants = ([(img, lm, False)] if cfg.include_original else [])
        variants += [augment_portrait(img, lm, rng, cfg) for _ in range(cfg.copies)]
        for j, (im_v, lm_v, flipped) in enumerate(variants):
            target, _, crop = align_for_fit(im_v, landmarks=lm_v)
            if j > 0 or not cfg.include_original:
                crop = _colour_jitter(crop, rng, cfg)
            prepared.append(dict(crop=crop, target=target, group=g, fit_group=(g, flipped)))
    if failed:
        if not prepared:
            raise _empty_error("images", len(images), failed)
        warnings.warn(f"skipped {len(failed)} image(s) without a face: {'; '.join(failed[:3])}", stacklevel=2)
    return _to_data(_fit_groups(prepared, model, fit_config), sources)


def _video_files(videos) -> list[Path]:
    if isinstance(videos, (str, os.PathLike)):
        p = Path(videos)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {p}")
            return files
        return [p]
    return [Path(v) for v in videos]


def regressor_data_from_videos(videos, *, every: int = 5, max_frames: int = 40, detector=None, model=None,
                               fit_config=None, show_progress: bool = False) -> RegressorData:
    """Every ``every``-th frame (25 fps, at most ``max_frames`` per clip) of talking-face videos.

    videos: a folder of videos, one file, or a list of files. Each clip is fitted with one identity for all its
    frames; frames without a face are skipped; a clip without any, with a warning; none at all: ``NoFaceError``.
    """
    from ..face.detect import NoFaceError, detect_landmarks
    from ..morphable.fit import align_for_fit, default_model
    from ..video import read_video

    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be >= 1, got {every}, {max_frames}")
    model = model or default_model()
    files = _video_files(videos)
    prepared, sources, failed = [], [], []
    for path in progress(files, show_progress, desc="videos"):
        frames = read_video(path, fps=25.0, max_frames=every * max_frames)[::every]
        g = len(sources)
        items = []
        for t, frame in enumerate(frames):
            try:
                lm = detect_landmarks(frame, detector)
            except NoFaceError:
                continue
            target, _, crop = align_for_fit(frame, landmarks=lm)
            items.append(dict(crop=crop, target=target, group=g, fit_group=g))
        if not items:
            failed.append(f"{path.name}: no face in {len(frames)} frames")
            continue
        sources.append(path.name)
        prepared += items
    if not prepared:
        raise _empty_error("videos", len(files), failed)
    if failed:
        warnings.warn(f"skipped {len(failed)} video(s): {'; '.join(failed[:3])}", stacklevel=2)
    return _to_data(_fit_groups(prepared, model, fit_config), sources)


def regressor_data_from_corpus(root: str | os.PathLike, *, every: int = 5, max_frames: int = 40,
                               clips: Sequence | None = None, model=None, fit_config=None,
                               show_progress: bool = False) -> RegressorData:
    """Frames of a corpus folder (``data.corpus``: ``build_default_corpus`` / ``build_video_corpus``).

    Uses the landmarks the corpus stores for each frame (no detection); each clip is fitted with one identity.
    clips: positions or ids to use (default all).
    """
    from ..data.corpus import load_clip, load_index
    from ..morphable.fit import align_for_fit, default_model

    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be >= 1, got {every}, {max_frames}")
    model = model or default_model()
    entries = load_index(root)["clips"]
    if clips is not None:
        by_id = {c["id"]: c for c in entries}
        entries = [entries[c] if isinstance(c, (int, np.integer)) else by_id[c] for c in clips]
    prepared, sources, failed = [], [], []
    for entry in progress(entries, show_progress, desc="corpus clips"):
        arrays = load_clip(root, entry)
        g = len(sources)
        items = []
        for frame, lm in list(zip(arrays["frames"], arrays["landmarks"]))[::every][:max_frames]:
            if not np.isfinite(lm).all() or np.ptp(lm, axis=0).min() < 1:
                continue  # no face tracked in this frame
            target, _, crop = align_for_fit(frame, landmarks=lm)
            items.append(dict(crop=crop, target=target, group=g, fit_group=g))
        if not items:
            failed.append(f"{entry['id']}: no usable landmarks")
            continue
        sources.append(str(entry["id"]))
        prepared += items
    if not prepared:
        raise _empty_error("corpus clips", len(entries), failed or ["the corpus has no clips"])
    return _to_data(_fit_groups(prepared, model, fit_config), sources)


def build_regressor_data(source=None, **kwargs) -> RegressorData:
    """Pick the builder from ``source``.

    None: ``skimage.data.astronaut()`` with augmentations (offline default); a corpus folder (``corpus.json``):
    :func:`regressor_data_from_corpus`; a folder of videos or a video file: :func:`regressor_data_from_videos`;
    a folder of images, an image file, an array or a list of them: :func:`regressor_data_from_images`.
    ``kwargs`` go to the chosen builder.
    """
    if source is None:
        import skimage.data

        return regressor_data_from_images([skimage.data.astronaut()], names=["skimage astronaut"], **kwargs)
    if isinstance(source, np.ndarray):
        return regressor_data_from_images([source], **kwargs)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"regressor training data not found: {p}")
        if p.is_dir():
            if (p / "corpus.json").is_file():
                return regressor_data_from_corpus(p, **kwargs)
            files = sorted(p.iterdir())
            if any(f.suffix.lower() in VIDEO_SUFFIXES for f in files):
                return regressor_data_from_videos(p, **kwargs)
            imgs = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            if not imgs:
                raise FileNotFoundError(f"{p} holds no corpus.json, videos or images to train the regressor on")
            return regressor_data_from_images(imgs, **kwargs)
        if p.suffix.lower() in VIDEO_SUFFIXES:
            return regressor_data_from_videos([p], **kwargs)
        return regressor_data_from_images([p], **kwargs)
    return regressor_data_from_images(list(source), **kwargs)


def split_regressor_data(data: RegressorData, heldout: float = 0.2, seed: int = 0,
                         by_source: bool | None = None) -> tuple[RegressorData, RegressorData]:
    """(train, held-out). by_source: hold out whole sources (portraits / clips), so no near-duplicate of a held-out
    sample is trained on; None: by source when there are at least 3 sources, else by sample."""
    if not 0 < heldout < 1:
        raise ValueError(f"heldout must be a fraction in (0, 1), got {heldout}")
    if len(data) < 2:
        raise ValueError(f"need at least 2 samples to split, got {len(data)}")
    rng = np.random.default_rng(seed)
    groups = np.unique(data.groups)
    if by_source is None:
        by_source = len(groups) >= 3
    if by_source:
        if len(groups) < 2:
            raise ValueError("by_source needs at least 2 sources")
        k = min(max(1, round(heldout * len(groups))), len(groups) - 1)
        held = np.isin(data.groups, rng.permutation(groups)[:k])
    else:
        k = min(max(1, round(heldout * len(data))), len(data) - 1)
        held = np.zeros(len(data), bool)
        held[rng.permutation(len(data))[:k]] = True
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
@dataclass
class RegressorTrainConfig(TrainConfig):
    """Regressor training settings. Defaults: the official backbone (ResNet-50, width 64) and Deep3DFaceRecon's
    learning rate (1e-4), landmark weight w_lm (1.6e-3) and landmark weights (``landmark_weighting="deep3d"``;
    "uniform" gives every point 1).

    w_exp / w_angle / w_trans / w_id: the per-group weights of the coefficient loss (this project's choice: an
    angle error of 0.1 rad or a shift of 0.1 units moves the landmarks by about 10 px at 224, hence the large
    pose weights; identity matters least for SadTalker, which keeps exp, angle and trans).
    init_mean: start the zeroed output heads' biases at the training set's mean coefficients.
    """

    lr: float = DEEP3D_LR
    batch_size: int = 32
    steps: int = 5000
    eval_every: int = 250
    checkpoint_every: int = 1000
    backbone: str = "resnet50"
    width: int = 64
    w_exp: float = 1.0
    w_angle: float = 100.0
    w_trans: float = 100.0
    w_id: float = 0.1
    w_lm: float = DEEP3D_W_LM
    landmark_weighting: str = "deep3d"
    init_mean: bool = True

    def __post_init__(self):
        if self.landmark_weighting not in ("deep3d", "uniform"):
            raise ValueError(f"landmark_weighting must be 'deep3d' or 'uniform', got {self.landmark_weighting!r}")
        RegressorConfig(backbone=self.backbone, width=self.width)  # validates the backbone name

    @classmethod
    def cpu(cls, **changes) -> "RegressorTrainConfig":
        """Small CPU preset (notebooks, CI): ResNet-18 at width 16, 150 steps of 16 crops, lr 1e-3 (10x
        Deep3DFaceRecon's, so that a minute shows), held-out error every 25 steps; one torch thread."""
        base = dict(backbone="resnet18", width=16, steps=150, batch_size=16, lr=1e-3, eval_every=25,
                    checkpoint_every=50, num_threads=1)
        return cls(**{**base, **changes})

    def regressor_config(self) -> RegressorConfig:
        return RegressorConfig(backbone=self.backbone, width=self.width)

    def landmark_weights(self) -> torch.Tensor:
        w = DEEP3D_LANDMARK_WEIGHTS if self.landmark_weighting == "deep3d" else (1.0,) * NUM_LANDMARKS
        return torch.tensor(w, dtype=torch.float32)


@dataclass
class RegressorMetrics:
    """Held-out quality: landmark_px = mean distance (px at 224) between the landmarks of the predicted
    coefficients and the detected ones; fit_px = the same for the fitted targets (the floor); angle_deg = mean
    absolute angle error vs the targets; exp_rmse / trans_rmse / id_rmse = coefficient errors."""

    landmark_px: float
    fit_px: float
    angle_deg: float
    exp_rmse: float
    trans_rmse: float
    id_rmse: float


@dataclass
class RegressorRun:
    """What :func:`train_regressor` returns. before / after: held-out metrics at step 0 and at the end
    (None without held-out data); mean_baseline: the held-out metrics of always predicting the training mean."""

    model: CoefficientRegressor
    history: TrainHistory
    out_dir: Path
    config: RegressorTrainConfig
    step: int
    checkpoint: Path | None = None
    before: RegressorMetrics | None = None
    after: RegressorMetrics | None = None
    mean_baseline: RegressorMetrics | None = None


def _images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 224, 224, 3] -> float [B, 3, 224, 224] in [0, 1] (as ``TalkingHeadPipeline.regress`` feeds it).

    Made contiguous: the permuted (channels-last strided) tensor crashes the CPU backward of the convolutions in
    the pinned torch ("double free or corruption"), while the forward alone is fine.
    """
    return (torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0).contiguous()


def _project_rows(morphable, coeffs: torch.Tensor) -> torch.Tensor:
    from ..morphable.render import project_landmarks

    return project_landmarks(morphable, coeffs, image_rows=True)  # [B, 68, 2] (x, row) at 224


def regressor_losses(pred: torch.Tensor, target: torch.Tensor, landmarks: torch.Tensor,
                     config: RegressorTrainConfig, morphable) -> tuple[torch.Tensor, dict[str, float]]:
    """L = sum_g w_g MSE(pred_g, target_g) + w_lm mean_i v_i ||R_d(pred)_i - q_i||^2 -> (loss, logged terms).

    pred / target [B, 257], landmarks q [B, 68, 2] (x, row) at 224.
    """
    terms: dict[str, torch.Tensor] = {}
    total = pred.new_zeros(())
    for g in ("exp", "angle", "trans", "id"):
        s = COEFF_257_SLICES[g]
        terms[f"mse_{g}"] = ((pred[:, s] - target[:, s]) ** 2).mean()
        total = total + getattr(config, f"w_{g}") * terms[f"mse_{g}"]
    lm = _project_rows(morphable, pred)
    d2 = ((lm - landmarks) ** 2).sum(-1)  # [B, 68]
    terms["lm"] = (d2 * config.landmark_weights().to(d2)).mean()
    total = total + config.w_lm * terms["lm"]
    logged = {k: float(v.detach()) for k, v in terms.items()}
    logged["landmark_px"] = float(d2.detach().sqrt().mean())
    logged["loss"] = float(total.detach())
    return total, logged


def landmark_error_px(coeffs: np.ndarray | torch.Tensor, landmarks: np.ndarray, morphable=None) -> np.ndarray:
    """Mean landmark distance [N] in px at 224 between coefficients [N, 257] and landmarks [N, 68, 2] (x, row)."""
    from ..morphable.fit import default_model

    morphable = morphable or default_model()
    with torch.no_grad():
        lm = _project_rows(morphable, torch.as_tensor(np.asarray(coeffs, np.float32)))
        return (lm - torch.as_tensor(landmarks)).norm(dim=-1).mean(-1).numpy()


def evaluate_coefficients(coeffs: np.ndarray, data: RegressorData, morphable=None) -> RegressorMetrics:
    """:class:`RegressorMetrics` of predicted coefficients [N, 257] against ``data``."""
    c = np.asarray(coeffs, np.float32)
    rmse = lambda g: float(np.sqrt(((c[:, COEFF_257_SLICES[g]] - data.coeffs[:, COEFF_257_SLICES[g]]) ** 2).mean()))  # noqa: E731
    a = COEFF_257_SLICES["angle"]
    return RegressorMetrics(
        landmark_px=float(landmark_error_px(c, data.landmarks, morphable).mean()),
        fit_px=float(data.fit_error_px.mean()),
        angle_deg=float(np.degrees(np.abs(c[:, a] - data.coeffs[:, a])).mean()),
        exp_rmse=rmse("exp"), trans_rmse=rmse("trans"), id_rmse=rmse("id"),
    )


@torch.no_grad()
def predict(model: CoefficientRegressor, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Aligned crops uint8 [N, 224, 224, 3] -> coefficients [N, 257] (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    out = [model(_images_tensor(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 257), np.float32)


def evaluate_regressor(model: CoefficientRegressor, data: RegressorData, morphable=None) -> RegressorMetrics:
    """Held-out metrics of ``model`` on ``data`` (eval mode)."""
    return evaluate_coefficients(predict(model, data.images), data, morphable)


def init_heads(model: CoefficientRegressor, mean_coeffs: np.ndarray | None = None) -> CoefficientRegressor:
    """Zero the output heads (Deep3DFaceRecon ``ReconNetWrapper``) and, when given, set their biases to the
    mean coefficients [257], so the untrained network predicts the mean face of the training set."""
    mean = None if mean_coeffs is None else torch.as_tensor(np.asarray(mean_coeffs, np.float32))
    start = 0
    with torch.no_grad():
        for head in model.final_layers:
            n = head.out_channels
            head.weight.zero_()
            head.bias.copy_(mean[start:start + n] if mean is not None else torch.zeros(n))
            start += n
    return model


def train_regressor(train: RegressorData, heldout: RegressorData | None = None,
                    config: RegressorTrainConfig | None = None, out_dir: str | os.PathLike = "runs/regressor", *,
                    init: CoefficientRegressor | str | os.PathLike | None = None, resume: bool = True,
                    morphable=None, stop_after: int | None = None, size: int = 256) -> RegressorRun:
    """Train the regressor on ``train``, logging the held-out landmark error; resumable.

    out_dir receives ``log.csv`` (train losses per step; held-out :class:`RegressorMetrics` every
    ``eval_every``), ``checkpoints/face_3drecon_<step>-model.pth`` (the official ``epoch_20.pth`` layout +
    optimizer and RNG state) and at the end the ``face_3drecon`` section of ``SadTalker_V0.0.2_{size}.safetensors``
    with ``sadtalker_lab.json`` (:func:`save_regressor`). init: a starting regressor or checkpoint (its
    backbone must match the config; default: fresh weights seeded with ``config.seed``, heads per
    :func:`init_heads`). stop_after: stop after that many steps without the final save (an interrupted run).
    morphable: the face model the coefficients belong to (default: the offline stand-in).
    Each batch also gets a random brightness gain in [0.9, 1.1] per crop (drawn from the step's generator, so a
    resumed run sees the same batches). ``RegressorRun.before`` is None for a resumed run.
    """
    from ..official.io import load_official
    from ..morphable.fit import default_model

    config = config or RegressorTrainConfig()
    if len(train) == 0:
        raise ValueError("the regressor training set is empty")
    morphable = morphable or default_model()
    if train.model_name and train.model_name != morphable.name:
        raise ValueError(f"the training coefficients were fitted with '{train.model_name}', but the landmark loss "
                         f"would use '{morphable.name}'; pass the same morphable model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        torch.manual_seed(config.seed)
        model = CoefficientRegressor(config.regressor_config())
        if isinstance(init, CoefficientRegressor):
            model.load_state_dict(init.state_dict())
        elif init is not None:
            load_official(model, NETWORK, init)
        else:
            init_heads(model, train.coeffs.mean(0) if config.init_mean else None)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.adam_betas))

        start = 0
        ckpt = latest_checkpoint(out_dir, CKPT_STEM) if resume else None
        if ckpt is not None:
            start = int(restore_training_state(ckpt, {NETWORK: model}, {"main": opt})["step"])
        logger = CSVLogger(out_dir, resume_step=start if ckpt is not None else None)
        has_heldout = heldout is not None and len(heldout) > 0
        before = evaluate_regressor(model, heldout, morphable) if has_heldout and start == 0 else None
        if before is not None:
            logger.log(0, "heldout", vars(before))

        images = _images_tensor(train.images)  # [N, 3, 224, 224]
        coeffs = torch.from_numpy(train.coeffs)
        landmarks = torch.from_numpy(train.landmarks)
        end = config.steps if stop_after is None else min(config.steps, stop_after)
        n = len(train)
        for step in progress(range(start, end), config.progress, desc="regressor", initial=start, total=config.steps):
            idx = torch.as_tensor(step_rng(config.seed, step).choice(n, size=min(config.batch_size, n), replace=False))
            x = images[idx]
            gain = 0.9 + 0.2 * torch.rand(len(idx), 1, 1, 1, generator=step_generator(config.seed, step))
            x = (x * gain).clamp(0, 1)  # brightness jitter per step (seeded by the step: resumable)
            loss, terms = regressor_losses(model(x), coeffs[idx], landmarks[idx], config, morphable)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            logger.log(done, "train", terms)
            if has_heldout and (done % config.eval_every == 0 or done == config.steps):
                logger.log(done, "heldout", vars(evaluate_regressor(model, heldout, morphable)))
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
                _checkpoint(out_dir, model, opt, done, config)
        logger.close()
        final = None
        if end == config.steps:
            final = save_regressor(out_dir, model, size=size, morphable_name=morphable.name)
            _checkpoint(out_dir, model, opt, config.steps, config)
        model.eval()
        after = evaluate_regressor(model, heldout, morphable) if has_heldout else None
        baseline = evaluate_coefficients(np.repeat(train.coeffs.mean(0, keepdims=True), len(heldout), 0), heldout,
                                         morphable) if has_heldout else None
    finally:
        torch.set_num_threads(threads)
    return RegressorRun(model=model, history=logger.history, out_dir=out_dir, config=config, step=end,
                        checkpoint=final, before=before, after=after, mean_baseline=baseline)


def _checkpoint(out_dir: Path, model, opt, step: int, config) -> None:
    from .common import checkpoint_path

    save_training_checkpoint(checkpoint_path(out_dir, CKPT_STEM, step), {NETWORK: model}, {"main": opt}, step, config)
    for _, old in list_checkpoints(out_dir, CKPT_STEM)[:-config.keep_checkpoints]:
        old.unlink()


# ---------------------------------------------------------------------------------------------
# Saving in the official layout
# ---------------------------------------------------------------------------------------------
def save_regressor(folder: str | os.PathLike, model: CoefficientRegressor, size: int = 256,
                   morphable_name: str | None = None, **info) -> Path:
    """Write ``model`` as the ``face_3drecon`` section of ``<folder>/SadTalker_V0.0.2_{size}.safetensors`` and its
    config to ``sadtalker_lab.json`` (``networks.save_networks``). Other networks already in that file (e.g.
    trained by the other stages into the same folder) are kept. Returns the safetensors path."""
    from safetensors.torch import load_file, save_file

    from ..official.registry import save_networks
    from ..official import OFFICIAL_NETWORKS, SAFETENSORS_FILE

    folder = Path(folder)
    path = folder / SAFETENSORS_FILE.format(size=size)
    prefix = OFFICIAL_NETWORKS[NETWORK].safetensors_prefix
    others = {k: v for k, v in load_file(str(path)).items() if not k.startswith(prefix)} if path.is_file() else {}
    extra = {"face_3drecon_coefficients": morphable_name} if morphable_name else {}
    save_networks(folder, {NETWORK: model}, {NETWORK: model.config}, size=size, **extra, **info)
    if others:
        merged = {**others, **load_file(str(path))}
        tmp = path.with_name(path.name + ".tmp")
        save_file(merged, str(tmp))
        os.replace(tmp, path)
    return path


def load_regressor(folder: str | os.PathLike, size: int = 256) -> CoefficientRegressor:
    """The regressor stored in a checkpoint folder (its ``sadtalker_lab.json`` config, else the official one), eval."""
    from ..official.io import load_official
    from ..official.registry import build_network, read_configs

    model = build_network(NETWORK, read_configs(folder).get(NETWORK))
    return load_official(model, NETWORK, folder, size=size).eval()
