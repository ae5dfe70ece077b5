"""LSE-D / LSE-C: lip-sync error distance and confidence (Wav2Lip Sec. 4; SadTalker Table 1).

The protocol is joonson/syncnet_python as Wav2Lip's ``evaluation/scores_LSE`` runs it:

1. Face track -> crops (``run_pipeline.py crop_video``): per frame the face box gives a half-size
   ``s = max(w, h) / 2`` and centre ``(x, y)``; the three are median-filtered over 13 frames
   (``scipy.signal.medfilt``, zero-padded ends as in the official code); the frame is padded by
   ``int(s (1 + 2 cs))`` with value 110, and rows ``[y - s, y + s (1 + 2 cs))``, columns
   ``[x - s (1 + cs), x + s (1 + cs))`` (``cs = 0.4``) are resized to 224x224. The crop reaches well below
   the box (mouth and chin); the official code reads frames with OpenCV, so the network sees BGR.
   Box source here: the offline dlib detector instead of S3FD (boxes differ somewhat in scale).
2. Audio: ``python_speech_features.mfcc`` of the 16 kHz int16 track (``metrics.mfcc``), 100 frames / s.
3. ``min_length = min(num_frames, floor(num_samples / 640))``; for each ``v in range(min_length - 5)``
   the lip tower sees frames ``v .. v+4`` and the audio tower MFCC frames ``4v .. 4v+19``.
4. ``calc_pdist`` with ``vshift = 15``: the audio embeddings are zero-padded by 15 rows at both ends, and
   for each video window ``i`` the distances to audio windows ``i - 15 .. i + 15`` are taken
   (``torch.nn.functional.pairwise_distance``, eps 1e-6).
5. ``mean_dists[k]`` = mean over ``i`` of those distances; **LSE-D** = ``min(mean_dists)``;
   **offset** = ``15 - argmin``; **LSE-C** = ``median(mean_dists) - min(mean_dists)``.

With the official ``syncnet_v2.model`` the numbers are the paper's metric; with a SyncNet trained here the
protocol is the same but the scale is not comparable, so the table labels the column ``[trained-here]``.
That crop SyncNet stays at chance on a CPU budget; the offline metric that works is ``metrics.lipsync``
(``LSE [landmark stand-in]``, same definitions, mouth landmarks instead of crops), which
``lipsync.default_lip_sync_scorer`` returns when ``syncnet_v2.model`` is absent.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .faces import FaceTrack, NoFaceError, track_faces
from .mfcc import mfcc
from .syncnet import OFFICIAL_KEY_PREFIXES, SyncNet, SyncNetConfig
from .video_io import AUDIO_RATE, EVAL_FPS, Clip
from .weights import WeightsMissingError, default_weight_path, find_weights, load_state

__all__ = ["LseResult", "SyncNetScorer", "load_syncnet", "face_crops", "syncnet_mfcc", "sync_embeddings",
           "offset_distances", "lse_from_embeddings", "lse", "VSHIFT", "CROP_SCALE", "OFFICIAL_LABEL",
           "TRAINED_HERE_LABEL", "TRAINED_HERE_FORMAT"]

VSHIFT = 15  # run_syncnet.py / calculate_scores_real_videos.py --vshift 15: offsets -15..+15 frames
CROP_SCALE = 0.4  # run_pipeline.py --crop_scale 0.40
CROP_PAD_VALUE = 110  # run_pipeline.py crop_video: np.pad(..., constant_values=(110, 110))
SMOOTH_KERNEL = 13  # run_pipeline.py crop_video: signal.medfilt(..., kernel_size=13)
SAMPLES_PER_FRAME = AUDIO_RATE // int(EVAL_FPS)  # 640: min_length = min(len(images), floor(len(audio) / 640))
MFCC_PER_FRAME = 4  # SyncNetInstance: cct[..., vframe*4 : vframe*4 + 20]
OFFICIAL_LABEL = "syncnet_v2"
TRAINED_HERE_LABEL = "trained-here"
TRAINED_HERE_FORMAT = "sadtalker-lab/syncnet-trained-here/v1"


@dataclass
class LseResult:
    """``distance`` = LSE-D, ``confidence`` = LSE-C, ``offset`` in frames, ``mean_dists`` ``[2 vshift + 1]``."""

    distance: float
    confidence: float
    offset: int
    mean_dists: np.ndarray
    num_windows: int
    label: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def _rename_official(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in OFFICIAL_KEY_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def load_syncnet(path: str | Path | None = None, *, device: str = "cpu") -> tuple[SyncNet, str]:
    """SyncNet in eval mode and its label: ``"syncnet_v2"`` (official file) or ``"trained-here"``.

    ``path`` may be the official ``syncnet_v2.model`` (a state dict of ``SyncNetModel.S``) or a file written
    by ``train.syncnet.save_trained_syncnet``. Without ``path`` the official file is looked up at its
    default location first, then the trained-here one; :class:`WeightsMissingError` names both.
    """
    if path is None:
        for name in ("syncnet", "syncnet_trained_here"):
            if default_weight_path(name).is_file():
                path = default_weight_path(name)
                break
        else:
            raise WeightsMissingError(
                f"no SyncNet weights: put the official syncnet_v2.model (joonson/syncnet_python download_model.sh) "
                f"at {default_weight_path('syncnet')}, or train one with train.syncnet.train_syncnet and save it "
                f"to {default_weight_path('syncnet_trained_here')} (labelled 'trained-here')"
            )
    path = Path(path)
    if not path.is_file():
        find_weights("syncnet", path)  # raises with the download hint
    from ..official.io import read_checkpoint  # the package's one torch.load (weights only)

    blob = read_checkpoint(path)
    if isinstance(blob, dict) and blob.get("format") == TRAINED_HERE_FORMAT:
        model = SyncNet(SyncNetConfig(**blob.get("config", {})))
        state, label = blob["state_dict"], str(blob.get("label", TRAINED_HERE_LABEL))
    elif isinstance(blob, dict) and any(k.startswith("netcnnaud.") for k in blob):
        model, state, label = SyncNet(), _rename_official(blob), OFFICIAL_LABEL
    else:
        raise ValueError(f"{path} is neither the official syncnet_v2.model nor a trained-here SyncNet file")
    load_state(model, state, path)
    return model.to(device).eval(), label


class SyncNetScorer:
    """A SyncNet plus its label, with the official evaluation as :meth:`score`."""

    def __init__(self, model: SyncNet, label: str, *, device: str = "cpu", batch_size: int = 20):
        self.model = model.to(device).eval()
        self.label = label
        self.device = device
        self.batch_size = batch_size  # run_syncnet.py --batch_size 20

    @classmethod
    def from_file(cls, path: str | Path | None = None, *, device: str = "cpu") -> "SyncNetScorer":
        model, label = load_syncnet(path, device=device)
        return cls(model, label, device=device)

    def score(self, clip: Clip, track: FaceTrack | None = None, **kwargs) -> LseResult:
        return lse(clip, self, track=track, **kwargs)


# ---------------------------------------------------------------------------------------------
# protocol steps
# ---------------------------------------------------------------------------------------------
def _fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a face (constant beyond the first / last detection)."""
    t = np.arange(len(values))
    return np.interp(t, t[found], values[found])


def face_crops(frames: np.ndarray, track: FaceTrack, *, crop_scale: float = CROP_SCALE, size: int = 224,
               max_missing_fraction: float = 0.2) -> np.ndarray:
    """SyncNet input crops ``uint8 [T, size, size, 3]`` (RGB) following ``run_pipeline.py crop_video``.

    Frames without a face get an interpolated box; more than ``max_missing_fraction`` of them (the official
    tracker gives up after 25 missed frames and needs 100-frame tracks) raises :class:`NoFaceError`.
    """
    import cv2
    from scipy.signal import medfilt

    if len(frames) < SMOOTH_KERNEL // 2 + 1:
        raise ValueError(f"LSE face crops need at least {SMOOTH_KERNEL // 2 + 1} frames (the official 13-frame "
                         f"median smoothing), got {len(frames)}")
    track.require_any()
    if track.missing_fraction > max_missing_fraction:
        raise NoFaceError(f"no face in {track.missing_fraction:.0%} of the frames of {track.name or 'the clip'} "
                          f"(LSE allows {max_missing_fraction:.0%})")
    b = track.boxes
    s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    y = (b[:, 1] + b[:, 3]) / 2
    x = (b[:, 0] + b[:, 2]) / 2
    with warnings.catch_warnings():  # clips shorter than the kernel: zero padding, as the official medfilt
        warnings.simplefilter("ignore", UserWarning)
        s, y, x = (medfilt(_fill_missing(v, track.found), kernel_size=SMOOTH_KERNEL) for v in (s, y, x))
    crops = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        bs = s[i]
        bsi = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=CROP_PAD_VALUE)
        my, mx = y[i] + bsi, x[i] + bsi
        face = padded[int(my - bs): int(my + bs * (1 + 2 * crop_scale)),
                      int(mx - bs * (1 + crop_scale)): int(mx + bs * (1 + crop_scale))]
        crops[i] = cv2.resize(face, (size, size))
    return crops


def syncnet_mfcc(audio: np.ndarray) -> np.ndarray:
    """``float64 [13, N]`` MFCC of 16 kHz mono audio (float in [-1, 1] or int16), in int16 units."""
    a = np.asarray(audio)
    if a.dtype != np.int16:
        a = np.asarray(a, np.float64) * 32768.0  # the official reads the int16 wav written by ffmpeg
    return mfcc(a).T


@torch.no_grad()
def sync_embeddings(net, crops: np.ndarray, mfcc_feats: np.ndarray, *, audio_frames: int | None = None,
                    batch_size: int = 20, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings ``[N, D]`` of the windows ``v = 0 .. min_length - 6`` (``SyncNetInstance.evaluate``).

    ``net`` needs ``forward_lips([B, 3, 5, H, W])`` and ``forward_audio([B, 1, 13, 20])``; ``crops`` is
    ``uint8 [T, H, W, 3]`` RGB (converted to BGR here), ``mfcc_feats`` ``[13, M]`` with 4 columns per frame.
    ``audio_frames`` = ``floor(num_samples / 640)`` (the official count; default: ``M // 4``).
    """
    if audio_frames is None:
        audio_frames = mfcc_feats.shape[1] // MFCC_PER_FRAME
    min_length = min(len(crops), audio_frames)
    last = min_length - 5
    if last <= 0:
        raise ValueError(f"LSE needs at least 6 frames of video with audio, got {min_length}")
    if MFCC_PER_FRAME * (last - 1) + 20 > mfcc_feats.shape[1]:
        raise ValueError(f"{mfcc_feats.shape[1]} MFCC frames are too few for {last} windows")
    video = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).float()  # BGR, 0..255
    video = video.permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, T, H, W]
    audio = torch.from_numpy(np.ascontiguousarray(mfcc_feats)).float()[None, None]  # [1, 1, 13, M]
    lip_feats, aud_feats = [], []
    for start in range(0, last, batch_size):
        idx = range(start, min(last, start + batch_size))
        lips = torch.cat([video[:, :, v: v + 5] for v in idx], 0)
        auds = torch.cat([audio[..., v * MFCC_PER_FRAME: v * MFCC_PER_FRAME + 20] for v in idx], 0)
        lip_feats.append(net.forward_lips(lips.to(device)).cpu())
        aud_feats.append(net.forward_audio(auds.to(device)).cpu())
    return torch.cat(lip_feats), torch.cat(aud_feats)


def offset_distances(lip_feats: torch.Tensor, aud_feats: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """``[N, 2 vshift + 1]``: distance of lip window ``i`` to audio window ``i + k - vshift`` (``calc_pdist``)."""
    win = 2 * vshift + 1
    padded = F.pad(aud_feats, (0, 0, vshift, vshift))  # zero rows beyond both ends, as the official code
    return torch.stack([F.pairwise_distance(lip_feats[[i]].repeat(win, 1), padded[i: i + win])
                        for i in range(len(lip_feats))])


def lse_from_embeddings(lip_feats, aud_feats, vshift: int = VSHIFT, label: str = "") -> LseResult:
    """LSE-D, LSE-C and the offset from per-window embeddings ``[N, D]`` (steps 4-5 of the protocol)."""
    lip_feats = torch.as_tensor(lip_feats, dtype=torch.float32)
    aud_feats = torch.as_tensor(aud_feats, dtype=torch.float32)
    if lip_feats.shape != aud_feats.shape or lip_feats.ndim != 2 or len(lip_feats) == 0:
        raise ValueError(f"need two [N, D] embeddings of the same shape, got {tuple(lip_feats.shape)} "
                         f"and {tuple(aud_feats.shape)}")
    dists = offset_distances(lip_feats, aud_feats, vshift)
    mean_dists = dists.mean(0)
    minval, minidx = torch.min(mean_dists, 0)
    conf = torch.median(mean_dists) - minval
    return LseResult(distance=float(minval), confidence=float(conf), offset=int(vshift - minidx),
                     mean_dists=mean_dists.numpy().astype(np.float64), num_windows=len(lip_feats), label=label)


def lse(clip: Clip, scorer: SyncNetScorer, *, track: FaceTrack | None = None, vshift: int = VSHIFT,
        max_missing_fraction: float = 0.2) -> LseResult:
    """LSE-D / LSE-C of a clip (25 fps frames + 16 kHz audio) with ``scorer``'s SyncNet.

    A scorer whose model is not a SyncNet (the landmark stand-in, ``metrics.lipsync.LandmarkSyncScorer``) scores
    with its own features and the same definitions (its ``score``)."""
    if not isinstance(scorer.model, SyncNet):
        return scorer.score(clip, track=track, vshift=vshift, max_missing_fraction=max_missing_fraction)
    if abs(clip.fps - EVAL_FPS) > 1e-6:
        raise ValueError(f"{clip.name or 'clip'} is {clip.fps:g} fps; SyncNet's protocol needs {EVAL_FPS:g} fps "
                         "(load_clip(..., fps=25) resamples)")
    if clip.sample_rate != AUDIO_RATE:
        raise ValueError(f"{clip.name or 'clip'}: audio at {clip.sample_rate} Hz; SyncNet needs {AUDIO_RATE} Hz")
    audio = clip.require_audio()
    notes = []
    expected = clip.num_frames * SAMPLES_PER_FRAME
    if abs(len(audio) - expected) > SAMPLES_PER_FRAME:
        notes.append(f"{clip.name}: audio {len(audio) / AUDIO_RATE:.2f} s vs video {clip.duration_s:.2f} s; "
                     "the shorter is used (as the official code does)")
    if min(clip.num_frames, len(audio) // SAMPLES_PER_FRAME) - 5 <= 0:
        raise ValueError(f"LSE needs at least 6 frames of video with audio, {clip.name or 'the clip'} has "
                         f"{min(clip.num_frames, len(audio) // SAMPLES_PER_FRAME)}")
    track = track if track is not None else track_faces(clip.frames, name=clip.name)
    crops = face_crops(clip.frames, track, max_missing_fraction=max_missing_fraction)
    if not track.found.all():
        notes.append(f"{clip.name}: {int((~track.found).sum())} frame(s) without a face, box interpolated")
    feats = sync_embeddings(scorer.model, crops, syncnet_mfcc(audio), audio_frames=len(audio) // SAMPLES_PER_FRAME,
                            batch_size=scorer.batch_size, device=scorer.device)
    result = lse_from_embeddings(*feats, vshift=vshift, label=scorer.label)
    result.notes = notes
    return result
