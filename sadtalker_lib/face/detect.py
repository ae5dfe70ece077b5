"""Face detection and 68 facial landmarks, offline.

The official SadTalker finds faces with facexlib (RetinaFace-ResNet50 boxes, then AWing-FAN 98 landmarks
reduced to 68; ``src/face3d/extract_kp_videos_safe.py``). Those weights are a separate download, so the
default here is dlib: its HOG frontal face detector and the 68-point shape predictor shipped with the
``face_recognition_models`` package. Both give the iBUG-300W 68-point layout that the rest of the pipeline
expects (``align.extract_5p`` indexes it). ``FacexlibDetector`` reproduces the official route when facexlib
and its weight files are installed.

Conventions: images are ``uint8`` RGB ``[H, W, 3]`` (``load_image`` makes them so); landmarks are
``float32 [68, 2]`` pixel coordinates ``(x, y)`` with y pointing down (image rows).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MIN_IMAGE_SIDE = 64  # smaller images cannot hold a face the detectors find (dlib's HOG window is 80 px)
DETECT_MAX_SIDE = 1024  # detection runs on a copy downscaled to this longest side (keeps dlib cheap)


class NoFaceError(ValueError):
    """No face was found in the image."""


class ImageLoadError(ValueError):
    """The image could not be read or is unusable (empty file, not an image, too small, ...)."""


class MultipleFacesWarning(UserWarning):
    """Several faces were found; the largest one is used."""


class DetectorUnavailableError(RuntimeError):
    """An optional detector's package or weight files are missing."""


# ---------------------------------------------------------------------------------------------
# Loading images
# ---------------------------------------------------------------------------------------------
def load_image(
    image: str | Path | np.ndarray, *, background: tuple[int, int, int] = (255, 255, 255),
    min_side: int = MIN_IMAGE_SIDE
) -> np.ndarray:
    """Any image file or array -> ``uint8`` RGB ``[H, W, 3]`` (C-contiguous).

    Handles greyscale, grey+alpha, RGBA (composited onto ``background``; the official ``cv2.imread`` simply
    drops alpha, which shows whatever colour the transparent pixels hold), palette, CMYK, 16-bit
    (scaled by 255/65535) and float images in [0, 1]. Files get their EXIF orientation applied (as
    ``cv2.imread`` does). Raises ``FileNotFoundError`` for a missing path and ``ImageLoadError`` for an
    empty or unreadable file, a bad array, or an image whose shorter side is below ``min_side``.
    """
    if isinstance(image, (str, Path)):
        array = _read_file(Path(image))
        source = str(image)
    elif isinstance(image, np.ndarray):
        array, source = image, f"array {image.shape} {image.dtype}"
    elif hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        array, source = _pil_to_array(image), f"PIL image {image.mode} {image.size}"
    else:
        raise TypeError(f"load_image expects a path, a numpy array or a PIL image, got {type(image).__name__}")
    rgb = _to_rgb_uint8(array, background, source)
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise ImageLoadError(f"{source}: image is {w}x{h} px; a portrait needs at least {min_side} px per side")
    return np.ascontiguousarray(rgb)


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_array(im)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{path}: image too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def _pil_to_array(im) -> np.ndarray:
    """PIL image in any mode -> array that ``_to_rgb_uint8`` understands."""
    if im.mode == "P":  # palette: keep transparency if the palette has it
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode.startswith("I;16"):
        return np.array(im).astype(np.uint16)
    elif im.mode == "I":
        arr = np.array(im)
        if arr.min() >= 0 and arr.max() <= 65535:  # some 16-bit files are decoded to mode "I"
            return arr.astype(np.uint16)
        raise ImageLoadError(f"unsupported 32-bit image with values in [{arr.min()}, {arr.max()}]")
    elif im.mode == "F":
        return np.array(im)  # float: must hold values in [0, 1] (checked by _to_unit_float)
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    return np.array(im)


def _to_rgb_uint8(arr: np.ndarray, background: tuple[int, int, int], source: str) -> np.ndarray:
    if arr.size == 0:
        raise ImageLoadError(f"{source}: empty image")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(f"{source}: expected [H, W], [H, W, 1|2|3|4], got shape {arr.shape}")
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return arr  # already uint8 RGB: no float round trip
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else _to_unit_float(arr, source)
    if x.ndim == 2:
        x = x[:, :, None]
    alpha = None
    if x.shape[2] in (2, 4):  # colour + alpha
        x, alpha = x[:, :, :-1], x[:, :, -1:]
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    if alpha is not None:  # composite onto the background colour
        x = x * alpha + (np.asarray(background, np.float32) / 255.0) * (1.0 - alpha)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _to_unit_float(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageLoadError(f"{source}: integer values in [{lo}, {hi}] are neither 8- nor 16-bit")
        return arr.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageLoadError(f"{source}: float image contains NaN or inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageLoadError(f"{source}: float images must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        return np.clip(arr.astype(np.float32), 0, 1)
    raise ImageLoadError(f"{source}: unsupported dtype {arr.dtype}")


# ---------------------------------------------------------------------------------------------
# Detection results
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceDetection:
    """One face: ``box`` (x1, y1, x2, y2) and ``landmarks`` ``float32 [68, 2]`` in the input image's pixels."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    num_faces: int  # how many faces the detector found in the image (the largest is this one)

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def _pick_largest(faces: list[FaceDetection], what: str) -> FaceDetection:
    if not faces:
        raise NoFaceError(f"no face found in {what}")
    best = max(faces, key=lambda f: f.area)
    if len(faces) > 1:
        warnings.warn(
            f"{len(faces)} faces found in {what}; using the largest (box {np.round(best.box).astype(int).tolist()})",
            MultipleFacesWarning,
            stacklevel=3,
        )
    best.num_faces = len(faces)
    return best


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Copy with longest side <= max_side (INTER_AREA) and the scale factor applied (1.0: untouched)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


# ---------------------------------------------------------------------------------------------
# dlib (default)
# ---------------------------------------------------------------------------------------------
def dlib_predictor_path() -> Path:
    """The 68-point shape predictor file from the ``face_recognition_models`` package."""
    with warnings.catch_warnings():  # the package imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import face_recognition_models
    return Path(face_recognition_models.pose_predictor_model_location())


@functools.lru_cache(maxsize=4)
def _dlib_models(predictor_path: str):
    import dlib

    if not Path(predictor_path).is_file():
        raise DetectorUnavailableError(f"dlib shape predictor file not found: {predictor_path}")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)


class DlibDetector:
    """dlib HOG face detector + 68-point shape predictor (iBUG-300W layout).

    Detection runs on a copy downscaled to ``max_side``; the box is mapped back and the shape predictor
    runs on the full-resolution image, so landmarks keep full precision. If no confident face is found
    without upsampling, one retry with ``retry_upsample`` (finds faces down to ~40 px at the detection scale).
    A face counts when its detector score (the HOG-SVM margin) is at least ``min_score``: real faces score
    about 1, the false positives seen on test portraits (helmets, textures) 0.001-0.12. If only weaker
    detections exist, they are used.
    """

    def __init__(
        self,
        predictor_path: str | Path | None = None,
        *,
        max_side: int = DETECT_MAX_SIDE,
        retry_upsample: int = 1,
        min_score: float = 0.3,
    ):
        self.predictor_path = str(predictor_path or dlib_predictor_path())
        self.max_side = max_side
        self.retry_upsample = retry_upsample
        self.min_score = min_score
        self._detector, self._predictor = _dlib_models(self.predictor_path)

    def _run(self, image: np.ndarray) -> list[tuple[object, float]]:
        """(rectangle, score) of the confident detections, trying ``retry_upsample`` if there are none."""
        weak: list[tuple[object, float]] = []
        for upsample in (0, self.retry_upsample) if self.retry_upsample > 0 else (0,):
            rects, scores, _ = self._detector.run(image, upsample, 0.0)
            found = list(zip(rects, scores))
            confident = [d for d in found if d[1] >= self.min_score]
            if confident:
                return confident
            weak = weak or found
        return weak

    def detect_all(self, image) -> list[FaceDetection]:
        """Every face found, in detector order (the confident ones; weaker detections only if none is confident)."""
        import dlib

        img = load_image(image)
        small, scale = _downscale(img, self.max_side)
        found = self._run(small)
        faces = []
        h, w = img.shape[:2]
        for r, score in found:
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / scale
            full = dlib.rectangle(*(int(round(v)) for v in box))
            shape = self._predictor(img, full)
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
            faces.append(FaceDetection(box=box, landmarks=lm, score=float(score), num_faces=len(found)))
        return faces

    def detect(self, image) -> FaceDetection:
        """The largest face (``MultipleFacesWarning`` if there are several, ``NoFaceError`` if none)."""
        return _pick_largest(self.detect_all(image), "the image")

    def landmarks(self, image) -> np.ndarray:
        """``float32 [68, 2]`` landmarks (x, y; y down) of the largest face."""
        return self.detect(image).landmarks

    def landmarks_in_box(self, image, box) -> np.ndarray:
        """``float32 [68, 2]``: the shape predictor run inside ``box`` (x1, y1, x2, y2 in the image's pixels)
        without detection: always 68 points, a face or not (the caller decides what the box means)."""
        import dlib

        shape = self._predictor(load_image(image), dlib.rectangle(*(int(round(float(v))) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


# ---------------------------------------------------------------------------------------------
# facexlib (optional: the official route)
# ---------------------------------------------------------------------------------------------
FACEXLIB_WEIGHTS = ("detection_Resnet50_Final.pth", "alignment_WFLW_4HG.pth")  # gfpgan/weights in the official repo
FACEXLIB_SCORE_THRESHOLD = 0.97  # det_net.detect_faces(img, 0.97) in src/utils/croper.py


class FacexlibDetector:
    """The official detector: facexlib RetinaFace-ResNet50 + AWing-FAN (98 points -> 68).

    Needs ``pip install facexlib`` and the two weight files ``FACEXLIB_WEIGHTS`` in ``weights_dir``
    (``gfpgan/weights`` in the official layout). The files are checked first so that facexlib never
    starts a download. Unlike the official code (which takes the first box), several faces give a
    ``MultipleFacesWarning`` and the largest box is used.
    """

    def __init__(self, weights_dir: str | Path, *, device: str = "cpu", max_side: int = DETECT_MAX_SIDE):
        weights_dir = Path(weights_dir)
        missing = [f for f in FACEXLIB_WEIGHTS if not (weights_dir / f).is_file()]
        if missing:
            raise DetectorUnavailableError(
                f"facexlib weights missing in {weights_dir}: {', '.join(missing)} (the official download_models.sh "
                "puts them in gfpgan/weights); use DlibDetector for an offline default"
            )
        try:
            from facexlib.alignment import init_alignment_model, landmark_98_to_68
            from facexlib.detection import init_detection_model
        except ImportError as e:
            raise DetectorUnavailableError(
                "FacexlibDetector needs the optional package facexlib (pip install facexlib); "
                f"use DlibDetector for an offline default ({e})"
            ) from e
        self._to_68 = landmark_98_to_68
        self._align = init_alignment_model("awing_fan", device=device, model_rootpath=str(weights_dir))
        self._det = init_detection_model("retinaface_resnet50", half=False, device=device,
                                         model_rootpath=str(weights_dir))
        self.max_side = max_side

    def detect_all(self, image) -> list[FaceDetection]:
        import torch

        img = load_image(image)
        small, scale = _downscale(img, self.max_side)
        with torch.no_grad():
            dets = self._det.detect_faces(small, FACEXLIB_SCORE_THRESHOLD)
        faces = []
        for det in dets:
            box = np.asarray(det[:4], np.float64) / scale
            x1, y1, x2, y2 = (int(v) for v in box)  # the official code truncates the box with int()
            patch = img[max(y1, 0) : y2, max(x1, 0) : x2]
            with torch.no_grad():
                lm = np.asarray(self._to_68(self._align.get_landmarks(patch)), np.float32)
            lm[:, 0] += max(x1, 0)
            lm[:, 1] += max(y1, 0)
            faces.append(FaceDetection(box=box, landmarks=lm, score=float(det[4]), num_faces=len(dets)))
        return faces

    def detect(self, image) -> FaceDetection:
        return _pick_largest(self.detect_all(image), "the image")

    def landmarks(self, image) -> np.ndarray:
        return self.detect(image).landmarks


def detect_landmarks(image, detector=None) -> np.ndarray:
    """``float32 [68, 2]`` landmarks of the largest face; ``detector`` defaults to a shared ``DlibDetector``."""
    return (detector or default_detector()).landmarks(image)


@functools.lru_cache(maxsize=1)
def default_detector() -> DlibDetector:
    """The shared offline default (dlib), built once."""
    return DlibDetector()
