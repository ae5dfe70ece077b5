"""Training data of the coefficient regressor (paper Sec. 3.1, R_e of Fig. 3): aligned face crops + fitted targets.

    faces (portraits + augmentations | video frames | the default corpus)
      ──dlib 68 landmarks──► align_img (the official 224 crop) ──► morphable.fit ──► targets
    RegressorData: aligned crops [N, 224, 224, 3] uint8, fitted coefficients [N, 257], landmarks [N, 68, 2] (x, row)

Builders (:func:`build_regressor_data` picks from what it is given):

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
default): a regressor trained on them predicts stand-in coefficients, not BFM ones.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..coeffs import COEFF_257_SLICES
from ..landmarks import LANDMARK_MIRROR
from ..video import VIDEO_SUFFIXES
from .corpus import is_corpus

__all__ = [
    "LANDMARK_MIRROR",
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
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


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
    from .augment import mirror_pose_columns

    a, t = COEFF_257_SLICES["angle"], COEFF_257_SLICES["trans"]
    c = torch.as_tensor(np.array(coeffs_257, np.float32, copy=True))
    return mirror_pose_columns(c, -1, yaw=a.start + 1, roll=a.start + 2, tx=t.start).numpy()


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


def _progress(items, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not enabled)


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
    for k, im in enumerate(_progress(images, show_progress, "portraits")):
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
    for path in _progress(files, show_progress, "videos"):
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
    from .corpus.format import load_clip, load_index, select_clips
    from ..morphable.fit import align_for_fit, default_model

    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be >= 1, got {every}, {max_frames}")
    model = model or default_model()
    entries = select_clips(load_index(root)["clips"], clips)
    prepared, sources, failed = [], [], []
    for entry in _progress(entries, show_progress, "corpus clips"):
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
            if is_corpus(p):
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
