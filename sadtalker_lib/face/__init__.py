"""Face preprocessing: detection (``detect``), 5-point alignment and crop modes (``align``), paste-back (``paste``).

Data flow (``align.prepare_portrait`` runs it): picture -> 68 landmarks -> crop (mode) -> source image
(256) -> landmarks again -> y flip -> 224 aligned crop + trans_params for the regressor; after rendering,
``paste.paste_frames`` puts the frames back into the picture (full / extfull).
"""
from .align import (
    LM3D_5_STANDARD,
    AlignedFace,
    CropInfo,
    FaceQuad,
    PreparedPortrait,
    align_face,
    align_img,
    crop,
    extract_5p,
    flip_y,
    pos_fit,
    prepare_portrait,
    resize_square,
)
from .detect import (
    DetectorUnavailableError,
    DlibDetector,
    FaceDetection,
    FacexlibDetector,
    ImageLoadError,
    MultipleFacesWarning,
    NoFaceError,
    default_detector,
    detect_landmarks,
    load_image,
)
from .paste import paste_box, paste_frame, paste_frames, paste_location, render_frame_size, resize_patch

__all__ = [
    "LM3D_5_STANDARD", "AlignedFace", "CropInfo", "FaceQuad", "PreparedPortrait", "align_face", "align_img", "crop",
    "extract_5p", "flip_y", "pos_fit", "prepare_portrait", "resize_square",
    "DetectorUnavailableError", "DlibDetector", "FaceDetection", "FacexlibDetector", "ImageLoadError",
    "MultipleFacesWarning", "NoFaceError", "default_detector", "detect_landmarks", "load_image",
    "paste_box", "paste_frame", "paste_frames", "paste_location", "render_frame_size", "resize_patch",
]
