"""Face alignment: the 5-point similarity crop for the 3DMM regressor, and the crop modes of the pipeline.

Two geometries from the official code, reproduced exactly (``tests/test_face_align_parity.py``,
``tests/test_face_crop_paste_parity.py``):

1. ``align_img`` (Deep3DFaceRecon, ``src/face3d/util/preprocess.py``): five landmarks are fitted to the
   five standard 3-D landmarks (``LM3D_5_STANDARD``) with an orthographic least-squares fit (``pos_fit``,
   "POS"); the image is scaled by ``rescale_factor / s`` and a ``target_size`` square is cut so that the
   face sits where the regressor expects it. Landmarks here use the Deep3DFaceRecon convention
   "y up": ``y' = H - 1 - y`` (``flip_y``, done by ``CropAndExtract.generate`` before the call).
2. ``align_face`` / ``crop`` (``src/utils/croper.py`` ``Preprocesser``): an FFHQ-style oriented square
   (the "quad") from eyes and mouth, a border-extended crop box, and the modes crop / extcrop / full /
   extfull / resize. ``CropInfo`` is the official ``crop_info`` that the paste-back needs.

Images are ``uint8`` RGB ``[H, W, 3]``; landmarks ``[68, 2]`` (x, y) in pixels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


# The five standard 3-D landmarks (x, y, z; y up) the 224 crop is aligned to: the 5-point reduction
# (``extract_5p``) of the 68 mean 3-D landmarks in Deep3DFaceRecon's ``BFM/similarity_Lm3D_all.mat``
# (key "lm"), as the official ``load_lm3d`` (src/face3d/util/load_mats.py) computes them. Stored in float32,
# as that computation yields them; float32 values are what make ``trans_params`` bit-exact.
# Rows: left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner.
LM3D_5_STANDARD = np.array(
    [
        [-0.31148657, 0.29036078, 0.13377953],
        [0.30979887, 0.28972036, 0.13179526],
        [0.0032534988, -0.046179324, 0.55244243],
        [-0.25216928, -0.38133916, 0.22405732],
        [0.2484662, -0.38128236, 0.22235769],
    ],
    dtype=np.float32,
)
LM3D_5_STANDARD.setflags(write=False)

# 1-based iBUG-68 indices used by extract_5p: nose tip 31, left eye corners 37/40, right eye corners 43/46,
# mouth corners 49/55 (src/face3d/util/preprocess.py extract_5p).
FIVE_POINT_INDICES_1BASED = (31, 37, 40, 43, 46, 49, 55)

ALIGN_TARGET_SIZE = 224  # the regressor's input size (align_img default)
ALIGN_RESCALE_FACTOR = 102.0  # align_img default rescale_factor: 102 / s pixels per 3-D unit
CROP_OUTPUT_SIZE = 512  # CropAndExtract.generate calls Preprocesser.crop(..., xsize=512)
PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")


# ---------------------------------------------------------------------------------------------
# 5 points and the y convention
# ---------------------------------------------------------------------------------------------
def extract_5p(lm68: np.ndarray) -> np.ndarray:
    """``[68, 2]`` (or ``[68, 3]``) -> ``[5, D]``: eye centres (mean of the two corners), nose tip, mouth corners.

    Keeps the input dtype (the official code runs it on float32 landmarks).
    """
    lm68 = np.asarray(lm68)
    if lm68.ndim != 2 or lm68.shape[0] != 68:
        raise ValueError(f"extract_5p expects [68, D] landmarks, got shape {lm68.shape}")
    nose, le1, le2, re1, re2, ml, mr = (i - 1 for i in FIVE_POINT_INDICES_1BASED)
    return np.stack(
        [lm68[[le1, le2]].mean(0), lm68[[re1, re2]].mean(0), lm68[nose], lm68[ml], lm68[mr]], axis=0
    )


def flip_y(lm: np.ndarray, height: int) -> np.ndarray:
    """Image rows (y down) <-> Deep3DFaceRecon's y-up convention: ``y' = height - 1 - y`` (its own inverse).

    ``CropAndExtract.generate`` (src/utils/preprocess.py) does this to the detected landmarks before
    ``align_img``; ``align_img``'s ``lm_new`` comes back in the same y-up convention.
    """
    out = np.array(lm, copy=True)
    out[:, -1] = height - 1 - out[:, -1]
    return out


def standard_landmarks_5(width: int, height: int) -> np.ndarray:
    """The official fallback when no face is found on the source image: ``(LM3D_5_STANDARD[:, :2] + 1) / 2``
    scaled to the image (``CropAndExtract.generate``; used there without the y flip)."""
    lm = (LM3D_5_STANDARD[:, :2] + 1) / 2.0
    return np.concatenate([lm[:, :1] * width, lm[:, 1:2] * height], 1)


# ---------------------------------------------------------------------------------------------
# align_img: POS fit + resize and crop to 224
# ---------------------------------------------------------------------------------------------
def pos_fit(lm5: np.ndarray, lm3d: np.ndarray = LM3D_5_STANDARD) -> tuple[np.ndarray, float]:
    """Least-squares orthographic fit ``lm5 ~ s * R[:2] @ X + t`` ("POS").

    Unknowns per image axis: a 3-vector (scale times a rotation row) and a translation; 2N equations
    with rows interleaved x, y. Returns ``t`` [2] (where the 3-D origin lands, in pixels, y up) and the
    scale ``s`` = mean norm of the two 3-vectors (pixels per 3-D unit).
    lm5: [N, 2] (y up), lm3d: [N, 3].
    """
    n = lm5.shape[0]
    a = np.zeros([2 * n, 8])
    a[0::2, 0:3] = lm3d
    a[0::2, 3] = 1
    a[1::2, 4:7] = lm3d
    a[1::2, 7] = 1
    b = np.reshape(lm5, [2 * n])  # x0, y0, x1, y1, ...
    k = np.linalg.lstsq(a, b, rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), s


@dataclass
class AlignedFace:
    """``align_img`` output.

    trans_params: float64 [5] = (w0, h0, s, tx, ty): input size, the image scale applied, and the POS
        translation (the regressor's source ``.mat`` stores (s, tx, ty) as float32 coefficients 70..72).
    image: uint8 [target, target, 3]; landmarks: [K, 2] in the crop, y up (as the input).
    """

    trans_params: np.ndarray
    image: np.ndarray
    landmarks: np.ndarray


def resize_and_crop(
    img: Image.Image, lm: np.ndarray, t: np.ndarray, s: float, target_size: int = ALIGN_TARGET_SIZE
) -> tuple[Image.Image, np.ndarray]:
    """Scale the image by ``s`` (PIL bicubic) and cut the ``target_size`` square that puts ``t`` at its centre.

    Sizes and corners are truncated toward zero as the official ``resize_n_crop_img`` (``astype(np.int32)``);
    parts of the square outside the scaled image are black. ``lm`` (y up) is mapped the same way.
    """
    w0, h0 = img.size
    w, h = int(w0 * s), int(h0 * s)
    # keep the official evaluation order: (w/2 - target/2) + (t - w0/2) * s, then truncate
    left = int(w / 2 - target_size / 2 + float((t[0] - w0 / 2) * s))
    up = int(h / 2 - target_size / 2 + float((h0 / 2 - t[1]) * s))
    out = img.resize((w, h), resample=Image.BICUBIC).crop((left, up, left + target_size, up + target_size))
    lm_new = np.stack([lm[:, 0] - t[0] + w0 / 2, lm[:, 1] - t[1] + h0 / 2], axis=1) * s
    lm_new = lm_new - np.reshape(np.array([(w / 2 - target_size / 2), (h / 2 - target_size / 2)]), [1, 2])
    return out, lm_new


def align_img(
    img,
    lm: np.ndarray,
    lm3d: np.ndarray = LM3D_5_STANDARD,
    target_size: int = ALIGN_TARGET_SIZE,
    rescale_factor: float = ALIGN_RESCALE_FACTOR,
) -> AlignedFace:
    """The regressor's aligned crop (Deep3DFaceRecon ``align_img``).

    img: uint8 RGB [H, W, 3] array or PIL image. lm: [68, 2] or [5, 2] landmarks, **y up** (``flip_y``).
    The scale maps the fitted face size to ``rescale_factor`` pixels: ``s_img = rescale_factor / s_pos``.
    """
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
    lm = np.asarray(lm)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (5, 68):
        raise ValueError(f"align_img expects [68, 2] or [5, 2] landmarks, got shape {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("align_img: landmarks contain NaN or inf")
    lm5 = lm if lm.shape[0] == 5 else extract_5p(lm)
    t, s_pos = pos_fit(lm5, lm3d)
    if not s_pos > 0:
        raise ValueError("align_img: degenerate landmarks (zero fitted scale)")
    s = rescale_factor / s_pos
    w0, h0 = pil.size
    face_img, lm_new = resize_and_crop(pil, lm, t, s, target_size=int(target_size))
    trans_params = np.array([w0, h0, s, t[0], t[1]], dtype=np.float64)
    return AlignedFace(trans_params=trans_params, image=np.asarray(face_img), landmarks=lm_new)


# ---------------------------------------------------------------------------------------------
# Preprocesser: the FFHQ-style quad and the crop modes
# ---------------------------------------------------------------------------------------------
@dataclass
class FaceQuad:
    """``Preprocesser.align_face`` output.

    rsize: (W, H) working size (the input size unless shrunk for very large faces);
    crop: (clx, cly, crx, cry) border-extended box in the working image (ints);
    quad: (lx, ly, rx, ry) face square inside ``crop`` (floats; users truncate with ``int()``).
    """

    rsize: tuple[int, int]
    crop: tuple[int, int, int, int]
    quad: tuple[float, float, float, float]


@dataclass
class CropInfo:
    """The official ``crop_info`` (``CropAndExtract.generate``), as the paste-back reads it.

    size: (ox2 - ox1, oy2 - oy1), the face square's size (crop* / full*) or the image size (resize);
    crop: (clx, cly, crx, cry) or None (resize); quad: (lx, ly, rx, ry) or None (resize).
    rsize: the working size of ``crop``/``quad`` (not in the official tuple; equals the image size unless
    ``align_face`` shrank a very large face).
    """

    size: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    quad: tuple[float, float, float, float] | None
    rsize: tuple[int, int] | None = None

    def as_official(self) -> tuple:
        """The official 3-tuple ``((w, h), crop, quad)``."""
        return (self.size, self.crop, self.quad)



def quad_ry_limit(width: int, height: int) -> int:
    """Upper bound for the face square's bottom edge ``ry`` in ``Preprocesser.align_face``: the image WIDTH.

    # OFFICIAL QUIRK: src/utils/croper.py clamps ``ry = min(max(quad[3], quad[5]), img.size[0])`` -- ``img.size[0]``
    is the width (the x bound ``rx`` uses the same). On landscape images ``ry`` can pass the height, and numpy
    slicing then silently makes the crop shorter than ``crop_info`` says; on tall images it can clip the square
    early. Reproduced for parity (``height`` unused).
    """
    del height
    return width

def align_face(img, lm: np.ndarray, output_size: int = CROP_OUTPUT_SIZE) -> FaceQuad:
    """FFHQ-style oriented square from eyes and mouth, and the crop box around it (``Preprocesser.align_face``).

    img: the image ([H, W, ...] array or PIL image) or its size (W, H): only the size is used.
    lm: [68, 2] (x, y; y down).
    The square is centred slightly below the eye midpoint (``eye_avg + 0.1 * eye_to_mouth``), with half-side
    ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``; the crop box adds a border of 10 % of the side (>= 3 px).
    """
    if isinstance(img, tuple):
        width, height = img
    else:
        width, height = img.size if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])
    lm = np.asarray(lm)
    if lm.shape != (68, 2):
        raise ValueError(f"align_face expects [68, 2] landmarks, got shape {lm.shape}")
    if not np.issubdtype(lm.dtype, np.floating):
        lm = lm.astype(np.float64)

    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5  # outer mouth corners
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # horizontal axis: eye line and the mouth line turned 90°
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2

    # Shrink very large faces (only factors > 1; the official code never resizes here for shrink == 1).
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        width, height = int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink))
        quad /= shrink
        qsize /= shrink
    rsize = (int(np.rint(float(width))), int(np.rint(float(height))))

    # Crop box: the quad's bounds plus a border, clipped to the image.
    border = max(int(np.rint(qsize * 0.1)), 3)
    box = (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )
    box = (max(box[0] - border, 0), max(box[1] - border, 0), min(box[2] + border, width), min(box[3] + border, height))
    if box[2] - box[0] < width or box[3] - box[1] < height:
        quad -= box[0:2]

    # The face square inside the crop box (the official padding step is commented out there: no padding).
    q = (quad + 0.5).flatten()
    lx = max(min(q[0], q[2]), 0)
    ly = max(min(q[1], q[7]), 0)
    rx = min(max(q[4], q[6]), width)
    ry = min(max(q[3], q[5]), quad_ry_limit(width, height))
    return FaceQuad(rsize=rsize, crop=box, quad=(float(lx), float(ly), float(rx), float(ry)))


def crop(images, lm: np.ndarray | None, mode: str = "crop", output_size: int = CROP_OUTPUT_SIZE):
    """Cut the face out of every frame like the official preprocess ``mode``; returns ``(frames, CropInfo)``.

    images: one uint8 [H, W, 3] image or a list of frames (the geometry comes from ``lm``, the landmarks
    of the first frame). Modes (``--preprocess``):
      * crop / full: the face square (``quad``) inside the crop box;
      * extcrop / extfull: the whole border-extended crop box ("still" in ``Preprocesser.crop``);
      * resize: nothing is cut (``lm`` may be None); ``CropInfo(size=(W, H), crop=None, quad=None)``.
    The frames are first ``cv2.resize``d to the working size (a copy unless a very large face was shrunk).
    """
    mode = mode.lower()
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocess mode {mode!r}; expected one of {PREPROCESS_MODES}")
    single = isinstance(images, np.ndarray) and images.ndim == 3
    frames = [images] if single else list(images)
    if not frames:
        raise ValueError("crop: no frames given")
    h, w = frames[0].shape[:2]
    if mode == "resize":
        info = CropInfo(size=(w, h), crop=None, quad=None, rsize=(w, h))
        return (frames[0] if single else frames), info
    if lm is None:
        raise ValueError(f"crop: mode {mode!r} needs the 68 landmarks of the first frame")

    geo = align_face(frames[0], lm, output_size=output_size)
    clx, cly, crx, cry = geo.crop
    lx, ly, rx, ry = (int(v) for v in geo.quad)
    extended = mode.startswith("ext")
    out = []
    for frame in frames:
        f = cv2.resize(frame, (geo.rsize[0], geo.rsize[1]))[cly:cry, clx:crx]
        out.append(f if extended else f[ly:ry, lx:rx])
    info = CropInfo(size=(rx - lx, ry - ly), crop=geo.crop, quad=geo.quad, rsize=geo.rsize)
    return (out[0] if single else out), info


def resize_square(frame: np.ndarray, size: int = 256) -> np.ndarray:
    """The source image the renderer sees: ``cv2.resize`` (bilinear) to ``size`` x ``size``.

    Official: ``CropAndExtract.generate``.
    """
    return cv2.resize(frame, (size, size))


# ---------------------------------------------------------------------------------------------
# The whole face preprocessing of one portrait (CropAndExtract.generate without the regressor)
# ---------------------------------------------------------------------------------------------
@dataclass
class PreparedPortrait:
    """Everything the face preprocessing gives the rest of the pipeline.

    source: uint8 [size, size, 3] the renderer's source image; crop_info: for the paste-back;
    landmarks: [68, 2] on ``source`` (y down) or None when the official 5-point fallback was used;
    aligned: the regressor's 224 crop (``AlignedFace``; its trans_params (s, tx, ty) join the coefficients).
    """

    source: np.ndarray
    crop_info: CropInfo
    landmarks: np.ndarray | None
    aligned: AlignedFace


def prepare_portrait(image, mode: str = "crop", size: int = 256, detector=None) -> PreparedPortrait:
    """Detect, crop (``mode``), resize to ``size`` and align to 224, as ``CropAndExtract.generate`` does.

    ``detector``: anything with ``landmarks(image) -> [68, 2]`` (default: the shared ``DlibDetector``).
    Raises ``NoFaceError`` if no face is found on the input in the crop modes. If the face is then
    missed on the resized crop, the official fallback (``standard_landmarks_5``) is used with a warning.
    """
    from .detect import NoFaceError, default_detector, load_image

    detector = detector or default_detector()
    img = load_image(image)
    lm_full = None if mode.lower() == "resize" else detector.landmarks(img)
    face, info = crop(img, lm_full, mode=mode)
    source = resize_square(face, size)
    try:
        lm = detector.landmarks(source)
        lm_up = flip_y(lm, source.shape[0])
    except NoFaceError:
        warnings.warn("no face found on the resized source image; using the standard 5 landmarks", stacklevel=2)
        lm, lm_up = None, standard_landmarks_5(source.shape[1], source.shape[0])
    return PreparedPortrait(source=source, crop_info=info, landmarks=lm, aligned=align_img(source, lm_up))
