"""The paper's evaluation suite (SadTalker Sec. 4.1, Table 1).

=================  =========================================================================================
module             what it computes (reference implementation)
=================  =========================================================================================
``fid``            FID on 256x256 frames with pytorch-fid's Inception and Frechet distance
``cpbd``           CPBD sharpness (Narvekar & Karam; equal to the ``cpbd`` package)
``csim``           identity cosine similarity (ArcFace when present; offline dlib ResNet, "CSIM [dlib]")
``lse``            LSE-D / LSE-C with SyncNet (joonson/syncnet_python protocol; ``syncnet``, ``mfcc``,
                   ``train.syncnet`` trains the "trained-here" stand-in)
``lipsync``        LSE-C / LSE-D [landmark stand-in]: dlib mouth shape vs audio -> mouth regressor, SyncNet's
                   definitions; ``default_lip_sync_scorer()`` (official syncnet_v2.model when present);
                   ``lipsync_train`` trains it, ``lipsync_validate`` checks it, ``evaluate.evaluate_video`` (CLI)
``diversity``      std of head-motion features (``head_pose``: Hopenet when present; offline solvePnP)
``beat_align``     Bailando's Beat Align Score (audio onset beats vs head-motion velocity minima)
``tables``         ``evaluate(...)`` -> Table-1-shaped DataFrame, ``paper_table1()``, plots
``video_io``       decoding videos at 25 fps / 256 px with audio (``load_clip``)
``weights``        where weights are expected; ``WeightsMissingError``
=================  =========================================================================================
"""
from .beat_align import beat_align, beat_align_score
from .cpbd import cpbd, cpbd_frames
from .csim import ArcFaceEmbedder, DlibFaceEmbedder, cosine_similarity, csim
from .diversity import diversity
from .faces import FaceTrack, NoFaceError, track_faces
from .fid import fid, fid_from_features, frechet_distance, load_inception
from .head_pose import HopenetHeadPose, PnPHeadPose, head_motion
from .lse import LseResult, SyncNetScorer, load_syncnet, lse, lse_from_embeddings
from .lipsync import LandmarkSyncScorer, default_lip_sync_scorer
from .tables import (METRICS, display_table, evaluate, paper_table, paper_table1, plot_metrics, side_by_side,
                     table_notes)
from .video_io import Clip, NoAudioTrackError, VideoError, load_clip
from .weights import WeightsMissingError

__all__ = [
    "evaluate", "paper_table", "paper_table1", "side_by_side", "table_notes", "display_table", "plot_metrics",
    "METRICS",
    "fid", "fid_from_features", "frechet_distance", "load_inception",
    "cpbd", "cpbd_frames",
    "csim", "cosine_similarity", "DlibFaceEmbedder", "ArcFaceEmbedder",
    "lse", "lse_from_embeddings", "load_syncnet", "SyncNetScorer", "LseResult",
    "default_lip_sync_scorer", "LandmarkSyncScorer",
    "diversity", "head_motion", "PnPHeadPose", "HopenetHeadPose",
    "beat_align", "beat_align_score",
    "load_clip", "Clip", "track_faces", "FaceTrack",
    "WeightsMissingError", "NoFaceError", "NoAudioTrackError", "VideoError",
]
