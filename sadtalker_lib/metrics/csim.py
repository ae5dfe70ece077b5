"""CSIM: cosine similarity of identity embeddings between the source image and each generated frame.

The paper (Sec. 4.1) uses ArcFace embeddings. :class:`ArcFaceEmbedder` loads an insightface
``arcface_torch`` IResNet ``backbone.pth`` when the user has one (5-point similarity alignment to the
standard 112x112 ArcFace template, RGB scaled to [-1, 1]). The offline default, :class:`DlibFaceEmbedder`,
is dlib's 128-d ResNet face descriptor shipped in ``face-recognition-models``
(``dlib.face_recognition_model_v1``, aligned by the 68-point shape predictor): a different network, so
the table labels its column ``CSIM [dlib]``.

CSIM of a video = mean over frames with a face of ``cos(e_source, e_frame)``.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .faces import FaceTrack, NoFaceError, track_faces
from .weights import default_weight_path, find_weights, load_state

__all__ = ["CsimResult", "DlibFaceEmbedder", "ArcFaceEmbedder", "default_embedder", "cosine_similarity", "csim",
           "ARCFACE_TEMPLATE_112"]

# insightface's standard 5-point destination for a 112x112 ArcFace crop (utils/face_align.py arcface_dst):
# left eye, right eye, nose tip, left mouth corner, right mouth corner (x, y; y down).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _landmarks_of(image: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is not None and np.isfinite(landmarks).all():
        return np.asarray(landmarks, np.float64)
    from ..face.detect import MultipleFacesWarning, default_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MultipleFacesWarning)
        return default_detector().landmarks(image).astype(np.float64)  # NoFaceError if none


class DlibFaceEmbedder:
    """dlib ``face_recognition_model_v1`` 128-d descriptor (offline default), aligned with 68 landmarks."""

    label = "dlib"

    def __init__(self):
        self._model = _dlib_face_model()

    def embed(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """``uint8 [H, W, 3]`` RGB (+ optional ``[68, 2]`` landmarks) -> ``float64 [128]``."""
        import dlib

        lm = _landmarks_of(image, landmarks)
        x1, y1 = np.floor(lm.min(0)).astype(int)
        x2, y2 = np.ceil(lm.max(0)).astype(int)
        shape = dlib.full_object_detection(dlib.rectangle(int(x1), int(y1), int(x2), int(y2)),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in lm])
        return np.asarray(self._model.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float64)


@functools.lru_cache(maxsize=1)
def _dlib_face_model():
    import dlib

    with warnings.catch_warnings():  # face_recognition_models imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import face_recognition_models
    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def _iresnet_layers(state: dict) -> tuple[int, int, int, int]:
    """Blocks per stage from the state-dict keys (``layer{i}.{j}.conv1.weight``)."""
    counts = []
    for i in range(1, 5):
        blocks = {k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}
        counts.append(len(blocks))
    return tuple(counts)


class ArcFaceEmbedder:
    """ArcFace (insightface arcface_torch IResNet ``backbone.pth``); :class:`WeightsMissingError` without it."""

    label = "ArcFace"

    def __init__(self, weights: str | Path | None = None, *, device: str = "cpu"):

        from .arcface import IResNet, IResNetConfig

        path = find_weights("arcface", weights)
        from ..official.io import read_checkpoint  # the package's one torch.load (weights only)

        state = read_checkpoint(path)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        layers = _iresnet_layers(state)
        if 0 in layers:
            raise ValueError(f"{path} does not look like an arcface_torch IResNet backbone (layers {layers})")
        self.model = IResNet(IResNetConfig(layers=layers))
        load_state(self.model, state, path)
        self.model.to(device).eval()
        self.device = device

    @staticmethod
    def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``uint8 [112, 112, 3]`` ArcFace crop: 5-point similarity transform onto ``ARCFACE_TEMPLATE_112``."""
        import cv2

        from sadtalker_lib.face.align import extract_5p

        src = extract_5p(np.asarray(landmarks, np.float64)[:, :2]).astype(np.float32)
        matrix, _ = cv2.estimateAffinePartial2D(src, ARCFACE_TEMPLATE_112.astype(np.float32), method=cv2.LMEDS)
        return cv2.warpAffine(np.ascontiguousarray(image), matrix, (112, 112), borderValue=0.0)

    def embed(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        import torch

        crop = self.align(image, _landmarks_of(image, landmarks))
        x = torch.from_numpy(crop).float().permute(2, 0, 1)[None] / 127.5 - 1.0  # (x / 255 - 0.5) / 0.5
        with torch.no_grad():
            return self.model(x.to(self.device))[0].cpu().numpy().astype(np.float64)


def default_embedder(arcface_weights: str | Path | None = None):
    """ArcFace if its weights are given or at the default location, else the offline dlib embedder."""
    if arcface_weights is not None or default_weight_path("arcface").is_file():
        return ArcFaceEmbedder(arcface_weights)
    return DlibFaceEmbedder()


@dataclass
class CsimResult:
    """``value`` = mean CSIM over ``per_frame`` (NaN where a frame has no face or was skipped by ``step``)."""

    value: float
    per_frame: np.ndarray
    label: str
    notes: list[str] = field(default_factory=list)


def csim(source: np.ndarray, frames: np.ndarray, embedder=None, *, track: FaceTrack | None = None,
         name: str = "", step: int = 1) -> CsimResult:
    """CSIM between ``source`` (``uint8 [H, W, 3]``) and every ``step``-th frame of ``frames`` (``[T, H, W, 3]``).

    :class:`NoFaceError` when the source or every frame has no face; frames without a face are NaN in
    ``per_frame``, skipped in the mean, and noted.
    """
    embedder = embedder or DlibFaceEmbedder()
    try:
        ref = embedder.embed(np.asarray(source))
    except NoFaceError as e:
        raise NoFaceError(f"no face in the CSIM source image of {name or 'the clip'}") from e
    track = track if track is not None else track_faces(frames, name=name)
    track.require_any()
    per_frame = np.full(len(frames), np.nan)
    for i in np.flatnonzero(track.found):
        if i % step:
            continue
        per_frame[i] = cosine_similarity(ref, embedder.embed(frames[i], track.landmarks[i]))
    notes = []
    if not track.found[::step].all():
        notes.append(f"{name}: {int((~track.found[::step]).sum())} frame(s) without a face skipped in CSIM")
    return CsimResult(value=float(np.nanmean(per_frame)), per_frame=per_frame, label=embedder.label, notes=notes)

