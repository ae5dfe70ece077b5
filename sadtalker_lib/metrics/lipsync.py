"""LSE-C / LSE-D [landmark stand-in]: an offline lip-sync metric from dlib mouth landmarks and log-mel audio.

The paper's LSE-C / LSE-D need ``syncnet_v2.model`` (joonson/syncnet_python), which this project cannot download;
a crop SyncNet trained here stays at chance on a CPU budget. This stand-in keeps SyncNet's *protocol* and replaces
its two towers by measured mouth shape and a small audio -> mouth regressor:

* **lip side** (:func:`mouth_features`): per frame, from the 68 dlib landmarks (found by :func:`lip_track` on frames
  upsampled so that the face is about ``LIP_FACE_PX`` wide: dlib's shape predictor on a 60 px face misplaces the
  lips), ``MOUTH_FEATURES`` = inner-lip
  aperture, outer-lip aperture, inner and outer mouth width, and jaw drop (chin to nose tip), each divided by the
  inter-ocular distance (eye centres), then standardised over the clip (z-score, std floored at
  ``MOUTH_STD_FLOOR`` so that a still mouth stays near zero instead of amplifying detector noise);
* **audio side** (:func:`audio_features`): per video frame (25 fps), the project's log-mel spectrogram
  (``sadtalker_lib.audio.melspectrogram``) pooled to ``AUDIO_BANDS`` bands, standardised over the clip, with
  ``AUDIO_CONTEXT`` frames of context on each side (0.44 s in all); :class:`AudioToMouth` (an MLP) maps it to
  the standardised mouth features of the same frame (trained by regression, ``metrics.lipsync_train``).

Scoring (the SyncNet definitions of ``syncnet_python`` / ``metrics.lse``, with 5-frame windows): the distance of
lip window ``v`` (frames ``v .. v+4``) to audio window ``u`` is the RMS difference between the measured and the
predicted mouth features over the 5 frames; for each offset ``s`` in ``-vshift .. vshift`` the distances of
lip window ``v`` to audio window ``v + s`` are averaged over ``v`` (``mean_dists``); an audio window beyond the
clip's ends scores the clip's *chance distance* (the mean over all lip / audio window pairs), the role the zero
padding of the audio embeddings plays in ``calc_pdist``. Then, as in SyncNet:

    LSE-D = min_k mean_dists[k],   offset = vshift - argmin_k mean_dists[k],   LSE-C = median(mean_dists) - LSE-D

SyncNet's LSE-C and LSE-D score the best alignment wherever it lies: a copy whose audio is shifted by a few frames
keeps (nearly) the same values, and only the offset moves. The stand-in's scorer therefore reports the clip *as it
is played* (:func:`as_played`, label ``STANDIN_LABEL`` = ``"landmark stand-in, at offset 0"``):

    LSE-C [landmark stand-in, at offset 0] = median(mean_dists) - mean_dists[offset 0]   (:func:`confidence_at_zero`)
    LSE-D [landmark stand-in, at offset 0] = mean_dists[offset 0]

(equal to SyncNet's values when the estimated offset is 0; LSE-C near or below 0 for a copy shifted by 3+ frames),
and keeps SyncNet's best-offset values beside them under their own names (:class:`PlayedLseResult`
``best_offset_confidence`` / ``best_offset_distance``; ``lse_c_best_offset`` / ``lse_d_best_offset`` in
:func:`lip_sync_summary`). The official ``syncnet_v2.model`` keeps the paper's (best-offset) definitions.

``offset`` has SyncNet's sign: positive when the audio leads the video, -k for audio delayed by k frames
(:func:`delay_audio`). The scale is not SyncNet's, so every table labels the columns ``[landmark stand-in]``.
When the official ``syncnet_v2.model`` is present, :func:`default_lip_sync_scorer` returns it instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..landmarks import INNER_LIP_PAIRS, INNER_MOUTH_CORNERS
from ..face.detect import FaceDetection, default_detector
from ..paths import cache_dir, partial_path
from .faces import FaceTrack, NoFaceError, track_faces
from .lse import OFFICIAL_LABEL, VSHIFT, LseResult, SyncNetScorer
from .video_io import AUDIO_RATE, EVAL_FPS, Clip

__all__ = ["STANDIN_LABEL", "STANDIN_FORMAT", "PlayedLseResult", "as_played", "MOUTH_FEATURES", "WINDOW",
           "AudioToMouthConfig", "AudioToMouth", "mouth_features", "mouth_code", "LIP_FACE_PX", "lip_track",
           "confidence_at_zero", "standardise", "audio_features", "window_distances", "lse_from_features",
           "LandmarkSyncScorer", "load_standin", "save_standin", "standin_path", "default_lip_sync_scorer",
           "lip_sync_model_on_disk",
           "delay_audio", "lip_sync_summary", "best_offset_confidence"]

STANDIN_LABEL = "landmark stand-in, at offset 0"  # the scorer reports the clip as played (module docstring)
STANDIN_FORMAT = "sadtalker-lab/lipsync-landmark-standin/v1"
STANDIN_FILE = "lipsync_landmark_standin_v3.pt"  # v2: lips from lip_track, people from face descriptors; v3: members
MOUTH_FEATURES = ("inner_aperture", "outer_aperture", "inner_width", "outer_width", "jaw_drop")
MOUTH_STD_FLOOR = 0.01  # inter-ocular distances: below 1 % the mouth counts as still (project choice)
AUDIO_BANDS = 20  # the 80 mel bands averaged in groups of 4
AUDIO_CONTEXT = 5  # video frames of audio context on each side of the frame
AUDIO_STD_FLOOR = 0.05  # normalised-dB units of sadtalker_lib.audio (8 / 100 per dB)
ROBUST_AUDIO = True
SCORED_FEATURES = (0, 1, 2, 3, 4)  # indices of the MOUTH_FEATURES the model predicts and the score compares
WINDOW = 5  # frames per window, as SyncNet's lip tower (0.2 s)
SAMPLES_PER_FRAME = int(AUDIO_RATE // EVAL_FPS)  # 640
LIP_FACE_PX = 224  # dlib face-box width (px) the frames are enlarged to before the landmarks (project choice)
MAX_UPSAMPLE = 4
_MAX_CHANCE_WINDOWS = 600  # chance distance from at most this many windows per side (strided; long clips)

# dlib 68-point indices (0-based)
_OUTER_PAIRS = ((50, 58), (51, 57), (52, 56))


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------
def _dist(lm: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lm[:, a] - lm[:, b], axis=-1)


def mouth_features(landmarks: np.ndarray) -> np.ndarray:
    """``[T, 68, 2]`` dlib landmarks (NaN rows allowed) -> ``[T, 5]`` mouth shape in inter-ocular distances
    (``MOUTH_FEATURES``); NaN where the landmarks are NaN."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be [T, 68, 2], got {lm.shape}")
    iod = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=-1)
    iod = np.where(iod > 1e-6, iod, np.nan)
    feats = np.stack([
        np.mean([_dist(lm, a, b) for a, b in INNER_LIP_PAIRS], 0),
        np.mean([_dist(lm, a, b) for a, b in _OUTER_PAIRS], 0),
        _dist(lm, *INNER_MOUTH_CORNERS), _dist(lm, 48, 54), _dist(lm, 8, 33)], 1)
    return feats / iod[:, None]


def standardise(x: np.ndarray, floor: float, robust: bool = False) -> np.ndarray:
    """Per-column z-score over time ``[T, F]``; NaN rows are filled by linear interpolation first (constant at the
    ends); the std is floored at ``floor`` (a constant column stays zero). ``robust``: median and IQR / 1.349
    instead of mean and std (a few frames of inserted silence barely move them)."""
    x = np.array(x, np.float64)
    t = np.arange(len(x))
    ok = np.isfinite(x).all(1)
    if not ok.any():
        raise NoFaceError("no frame with mouth landmarks")
    if not ok.all():
        x = np.stack([np.interp(t, t[ok], col[ok]) for col in x.T], 1)
    if robust:
        q1, med, q3 = np.percentile(x, [25, 50, 75], axis=0)
        return (x - med) / np.maximum((q3 - q1) / 1.349, floor)
    return (x - x.mean(0)) / np.maximum(x.std(0), floor)


def mouth_code(landmarks: np.ndarray) -> np.ndarray:
    """``[T, 68, 2]`` -> ``[T, len(SCORED_FEATURES)]``: the standardised mouth features the model predicts."""
    return standardise(mouth_features(landmarks), MOUTH_STD_FLOOR)[:, list(SCORED_FEATURES)]


def audio_features(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """16 kHz mono audio -> ``float32 [num_frames, (2 AUDIO_CONTEXT + 1) AUDIO_BANDS]``: per video frame, the
    log-mel bands of its 40 ms (standardised over the clip) and of ``AUDIO_CONTEXT`` frames on each side."""
    from ..audio import DEFAULT_CONFIG, melspectrogram

    a = np.asarray(audio, np.float32)
    if a.dtype != np.float32 or a.ndim != 1:
        raise ValueError(f"audio must be mono [N], got {a.shape}")
    need = num_frames * SAMPLES_PER_FRAME
    a = np.pad(a[:need], (0, max(0, need - len(a))))  # silence beyond the audio's end
    mel = melspectrogram(a)  # [80, 1 + N // 200], 80 mel frames / s
    per_frame = DEFAULT_CONFIG.mel_frames_per_second / EVAL_FPS  # 3.2
    starts = np.floor(np.arange(num_frames) * per_frame).astype(int)
    idx = np.clip(starts[:, None] + np.arange(int(np.ceil(per_frame)))[None], 0, mel.shape[1] - 1)
    frames = mel[:, idx].mean(-1).T  # [T, 80]
    bands = frames.reshape(num_frames, AUDIO_BANDS, -1).mean(-1)  # [T, 20]
    bands = standardise(bands, AUDIO_STD_FLOOR, robust=ROBUST_AUDIO)
    padded = np.pad(bands, ((AUDIO_CONTEXT, AUDIO_CONTEXT), (0, 0)), mode="edge")
    ctx = np.stack([padded[k: k + num_frames] for k in range(2 * AUDIO_CONTEXT + 1)], 1)  # [T, 11, 20]
    return ctx.reshape(num_frames, -1).astype(np.float32)


class _UpsampledDetector:
    """A detector run on frames enlarged ``factor`` times (bicubic); boxes and landmarks in the input's pixels."""

    def __init__(self, detector, factor: float):
        self.detector, self.factor = detector, float(factor)

    def detect(self, image: np.ndarray) -> FaceDetection:
        import cv2

        if self.factor == 1.0:
            return self.detector.detect(image)
        big = cv2.resize(image, None, fx=self.factor, fy=self.factor, interpolation=cv2.INTER_CUBIC)
        d = self.detector.detect(big)
        return FaceDetection(box=d.box / self.factor, landmarks=d.landmarks / self.factor, score=d.score,
                             num_faces=d.num_faces)


def _face_width_px(track: FaceTrack) -> float:
    w = track.boxes[track.found, 2] - track.boxes[track.found, 0]
    return float(np.median(w)) if len(w) else float("nan")


def lip_track(frames: np.ndarray, *, name: str = "", detector=None, probes: int = 5) -> FaceTrack:
    """dlib face track of ``uint8 [T, H, W, 3]`` frames for the lip side: the face width is measured on ``probes``
    frames, then every frame is enlarged (bicubic, at most ``MAX_UPSAMPLE`` times) so that the face is about
    ``LIP_FACE_PX`` wide before the 68 landmarks are fitted (returned in the input's pixels)."""
    detector = detector or default_detector()
    idx = np.unique(np.linspace(0, len(frames) - 1, min(probes, len(frames))).astype(int))
    width = float("nan")
    for factor in (1.0, 2.0):
        width = _face_width_px(track_faces(frames[idx], _UpsampledDetector(detector, factor)))
        if np.isfinite(width):
            break
    return track_faces(frames, _UpsampledDetector(detector, lip_upsample_factor(width)), name=name)


def lip_upsample_factor(face_width_px: float) -> float:
    """How many times frames with a face box this wide (px) are enlarged before the 68 landmarks are fitted:
    about ``LIP_FACE_PX`` wide, at most ``MAX_UPSAMPLE`` times (1 when the width is unknown, NaN)."""
    if not np.isfinite(face_width_px) or face_width_px <= 0:
        return 1.0
    return float(np.clip(round(LIP_FACE_PX / face_width_px), 1, MAX_UPSAMPLE))


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
@dataclass
class AudioToMouthConfig:
    """MLP sizes; the defaults are the project's (no paper value exists for a stand-in). ``members``: independently
    initialised MLPs whose predictions are averaged (an ensemble; each is trained on its own error,
    ``metrics.lipsync_train``)."""

    in_dim: int = (2 * AUDIO_CONTEXT + 1) * AUDIO_BANDS
    hidden: int = 128
    out_dim: int = len(SCORED_FEATURES)
    dropout: float = 0.1
    members: int = 1


class AudioToMouth(nn.Module):
    """``[B, in_dim]`` audio features of a frame -> ``[B, out_dim]`` predicted standardised mouth features: the mean
    of the ``members`` MLPs, or each member's prediction ``[members, B, out_dim]`` with ``per_member=True``."""

    def __init__(self, config: AudioToMouthConfig | None = None):
        super().__init__()
        self.config = c = config or AudioToMouthConfig()
        if c.members < 1:
            raise ValueError(f"AudioToMouthConfig.members must be >= 1, got {c.members}")
        self.members = nn.ModuleList(
            nn.Sequential(nn.Linear(c.in_dim, c.hidden), nn.ReLU(), nn.Dropout(c.dropout),
                          nn.Linear(c.hidden, c.hidden), nn.ReLU(), nn.Dropout(c.dropout),
                          nn.Linear(c.hidden, c.out_dim)) for _ in range(c.members))

    def forward(self, audio_feats: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        out = torch.stack([m(audio_feats) for m in self.members])
        return out if per_member else out.mean(0)


# ---------------------------------------------------------------------------------------------
# scoring (SyncNet's definitions on 5-frame windows)
# ---------------------------------------------------------------------------------------------
def _window_mean(x: np.ndarray, window: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(x)])
    return (c[window:] - c[:-window]) / window


def window_distances(mouth: np.ndarray, predicted: np.ndarray, vshift: int = VSHIFT,
                     window: int = WINDOW) -> tuple[np.ndarray, float]:
    """Distances ``[N, 2 vshift + 1]`` of lip window ``v`` to audio window ``v + k - vshift`` (NaN beyond the
    ends) and the chance distance (mean over all window pairs); ``mouth``, ``predicted``: ``[T, F]``."""
    t = min(len(mouth), len(predicted))
    n = t - window + 1
    if n <= 0:
        raise ValueError(f"lip sync needs at least {window} frames with audio, got {t}")
    m, p = np.asarray(mouth[:t], np.float64), np.asarray(predicted[:t], np.float64)
    out = np.full((n, 2 * vshift + 1), np.nan)
    for k in range(2 * vshift + 1):
        s = k - vshift
        lo, hi = max(0, -s), min(n, n - s)  # lip windows whose audio window v + s exists
        if hi <= lo:
            continue
        err = ((m[lo: hi + window - 1] - p[lo + s: hi + s + window - 1]) ** 2).mean(1)
        out[lo:hi, k] = np.sqrt(_window_mean(err, window))
    stride = max(1, int(np.ceil(n / _MAX_CHANCE_WINDOWS)))
    starts = np.arange(0, n, stride)
    mw = np.stack([m[starts + w] for w in range(window)], 1).reshape(len(starts), -1)  # [n', window F]
    pw = np.stack([p[starts + w] for w in range(window)], 1).reshape(len(starts), -1)
    sq = (mw ** 2).sum(1)[:, None] + (pw ** 2).sum(1)[None] - 2 * mw @ pw.T
    chance = float(np.sqrt(np.maximum(sq, 0.0) / mw.shape[1]).mean())
    return out, chance


def lse_from_features(mouth: np.ndarray, predicted: np.ndarray, vshift: int = VSHIFT,
                      label: str = STANDIN_LABEL) -> LseResult:
    """LSE-D, LSE-C and the offset (module docstring) from standardised mouth features and their prediction."""
    dists, chance = window_distances(mouth, predicted, vshift)
    mean_dists = np.where(np.isnan(dists), chance, dists).mean(0)
    k = int(np.argmin(mean_dists))
    d = float(mean_dists[k])
    return LseResult(distance=d, confidence=float(np.median(mean_dists) - d), offset=vshift - k,
                     mean_dists=mean_dists, num_windows=len(dists), label=label)


def confidence_at_zero(result: LseResult) -> float:
    """*LSE-C at offset 0* (module docstring): ``median(mean_dists) - mean_dists[offset 0]``; equals LSE-C when the
    estimated offset is 0. Defined for any ``LseResult`` with ``mean_dists`` over ``-vshift .. vshift``."""
    md = np.asarray(result.mean_dists, np.float64)
    return float(np.median(md) - md[(len(md) - 1) // 2])


@dataclass
class PlayedLseResult(LseResult):
    """An :class:`~sadtalker_lib.metrics.lse.LseResult` scored *as played*: ``confidence`` / ``distance`` at offset 0
    (module docstring); SyncNet's best-offset LSE-C / LSE-D beside them; ``offset`` is the best offset as ever."""

    best_offset_confidence: float = float("nan")  # SyncNet's LSE-C: median(mean_dists) - min(mean_dists)
    best_offset_distance: float = float("nan")  # SyncNet's LSE-D: min(mean_dists)


def as_played(result: LseResult, label: str = STANDIN_LABEL) -> PlayedLseResult:
    """``result`` (SyncNet's definitions) rescored at offset 0, with its best-offset values kept beside."""
    md = np.asarray(result.mean_dists, np.float64)
    return PlayedLseResult(distance=float(md[(len(md) - 1) // 2]), confidence=confidence_at_zero(result),
                           offset=result.offset, mean_dists=md, num_windows=result.num_windows, label=label,
                           notes=list(result.notes), best_offset_confidence=float(result.confidence),
                           best_offset_distance=float(result.distance))


def best_offset_confidence(result: LseResult) -> float:
    """SyncNet's LSE-C (best offset) of any result: kept beside a :class:`PlayedLseResult`, else ``confidence``."""
    return float(getattr(result, "best_offset_confidence", result.confidence))


class LandmarkSyncScorer(SyncNetScorer):
    """The stand-in with :class:`~sadtalker_lib.metrics.lse.SyncNetScorer`'s interface: ``metrics.lse.lse`` and
    ``tables.evaluate(syncnet=...)`` accept it; its ``label`` is ``STANDIN_LABEL`` (columns
    ``LSE-C [landmark stand-in, at offset 0]``) and :meth:`score` returns a :class:`PlayedLseResult`."""

    def __init__(self, model: AudioToMouth, label: str = STANDIN_LABEL, *, device: str = "cpu",
                 notes: str = ""):
        super().__init__(model, label, device=device)
        self.notes = notes

    @torch.no_grad()
    def predict(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """Predicted standardised mouth features ``[num_frames, 5]`` of 16 kHz audio."""
        feats = torch.from_numpy(audio_features(audio, num_frames)).to(self.device)
        return self.model.eval()(feats).cpu().numpy().astype(np.float64)

    def score(self, clip: Clip, track: FaceTrack | None = None, *, vshift: int = VSHIFT,
              max_missing_fraction: float = 0.2, retrack: bool = True) -> PlayedLseResult:
        """LSE of a 25 fps clip with 16 kHz audio, as played (:func:`as_played`; the offset is the best one).
        Faces: :func:`lip_track` unless ``track`` is given; a given track
        whose face is under ``LIP_FACE_PX / 1.5`` wide is redone with :func:`lip_track` unless ``retrack`` is
        False (e.g. landmarks that were not fitted on the frames)."""
        if abs(clip.fps - EVAL_FPS) > 1e-6:
            raise ValueError(f"{clip.name or 'clip'} is {clip.fps:g} fps; lip sync needs {EVAL_FPS:g} fps "
                             "(load_clip(..., fps=25) resamples)")
        if clip.sample_rate != AUDIO_RATE:
            raise ValueError(f"{clip.name or 'clip'}: audio at {clip.sample_rate} Hz; lip sync needs {AUDIO_RATE} Hz")
        audio = clip.require_audio()
        n = min(clip.num_frames, len(audio) // SAMPLES_PER_FRAME)
        if n < WINDOW + 1:
            raise ValueError(f"lip sync needs at least {WINDOW + 1} frames of video with audio, "
                             f"{clip.name or 'the clip'} has {n}")
        if track is None or (retrack and not _face_width_px(track) >= LIP_FACE_PX / 1.5):
            track = lip_track(clip.frames, name=clip.name)
        track.require_any()
        if track.missing_fraction > max_missing_fraction:
            raise NoFaceError(f"no face in {track.missing_fraction:.0%} of the frames of {clip.name or 'the clip'} "
                              f"(lip sync allows {max_missing_fraction:.0%})")
        mouth = mouth_code(track.landmarks[:n])
        result = as_played(lse_from_features(mouth, self.predict(audio, n), vshift, self.label), self.label)
        if not track.found[:n].all():
            result.notes.append(f"{clip.name}: {int((~track.found[:n]).sum())} frame(s) without a face, "
                                "mouth interpolated")
        return result


# ---------------------------------------------------------------------------------------------
# weights: the cached stand-in, or the official SyncNet when present
# ---------------------------------------------------------------------------------------------
def standin_path() -> Path:
    """``<cache>/lipsync/<STANDIN_FILE>`` (``sadtalker_lib.paths.cache_dir``)."""
    return cache_dir() / "lipsync" / STANDIN_FILE


def save_standin(model: AudioToMouth, path: str | Path, *, notes: str = "") -> Path:
    """Write the stand-in (state dict + config + label) for :func:`load_standin`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    torch.save({"format": STANDIN_FORMAT, "label": STANDIN_LABEL, "config": asdict(model.config),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "notes": notes}, tmp)
    tmp.replace(path)
    return path


def load_standin(path: str | Path | None = None, *, device: str = "cpu") -> LandmarkSyncScorer:
    """The stand-in scorer from ``path`` (default :func:`standin_path`); ``FileNotFoundError`` / ``ValueError``."""
    from ..official.io import read_checkpoint  # the package's one torch.load (weights only)

    path = Path(path) if path is not None else standin_path()
    if not path.is_file():
        raise FileNotFoundError(f"no lip-sync stand-in at {path}; metrics.lipsync_train.train_standin() writes it")
    blob = read_checkpoint(path)
    if not (isinstance(blob, dict) and blob.get("format") == STANDIN_FORMAT):
        raise ValueError(f"{path} is not a lip-sync stand-in file ({STANDIN_FORMAT})")
    model = AudioToMouth(AudioToMouthConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    # the label says how the scorer reports (this code: at offset 0), not what the file holds: STANDIN_LABEL
    return LandmarkSyncScorer(model.to(device).eval(), STANDIN_LABEL, device=device, notes=str(blob.get("notes", "")))


def lip_sync_model_on_disk() -> bool:
    """Whether :func:`default_lip_sync_scorer` finds a file to load (``syncnet_v2.model`` or the cached stand-in)
    rather than training the stand-in first (minutes: a fresh machine)."""
    from .weights import default_weight_path

    return default_weight_path("syncnet").is_file() or standin_path().is_file()


def default_lip_sync_scorer(*, device: str = "cpu", train_if_missing: bool = True, log=print) -> SyncNetScorer:
    """The lip-sync scorer every evaluation should use.

    1. the official ``syncnet_v2.model`` at its default location (``metrics.weights``): LSE-C / LSE-D as in the
       paper (label ``syncnet_v2``);
    2. else the cached landmark stand-in (:func:`standin_path`);
    3. else (``train_if_missing``) the stand-in is trained once at the CPU preset
       (``metrics.lipsync_train.train_standin``), cached, and used; ``log`` says so on the terminal.
    """
    from .weights import default_weight_path

    official = default_weight_path("syncnet")
    if official.is_file():
        scorer = SyncNetScorer.from_file(official, device=device)
        if scorer.label == OFFICIAL_LABEL:
            return scorer
    path = standin_path()
    if not path.is_file():
        if not train_if_missing:
            raise FileNotFoundError(f"no syncnet_v2.model at {official} and no lip-sync stand-in at {path}")
        from .lipsync_train import train_standin

        log(f"lip sync: no syncnet_v2.model at {official}; training the offline 'LSE [{STANDIN_LABEL}]' "
            f"model once at the CPU preset (cached at {path})")
        train_standin(path, log=log)
    return load_standin(path, device=device)


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def delay_audio(clip: Clip, frames: int) -> Clip:
    """An out-of-sync copy of ``clip``: its audio delayed by ``frames`` video frames (negative: advanced), shifted
    circularly, so that the copy has the same frames, the same length and the same audio content, and only the
    alignment differs (the ``|frames|`` wrapped frames of audio land at the other end, mismatched). The metric
    should report ``offset == -frames`` (SyncNet's sign)."""
    audio = clip.require_audio()
    n = min(clip.num_frames, len(audio) // SAMPLES_PER_FRAME)
    k = int(frames)
    if abs(k) >= n - WINDOW:
        raise ValueError(f"a shift of {k} frames leaves too little of a {n}-frame clip")
    sound = np.roll(audio[: n * SAMPLES_PER_FRAME], k * SAMPLES_PER_FRAME)
    return Clip(frames=clip.frames[:n], fps=clip.fps, audio=sound, sample_rate=clip.sample_rate,
                name=f"{clip.name} (audio {k:+d} frames)")


def lip_sync_summary(result: LseResult, source: str) -> dict:
    """The ``evaluate`` JSON's ``lip_sync`` entry: ``offset_frames`` (best offset, SyncNet's sign), ``lse_c`` /
    ``lse_d`` (the scorer's reported values: at offset 0 for the stand-in, SyncNet's best-offset values for the
    official model; ``definition`` says which), ``lse_c_at_0`` (:func:`confidence_at_zero`, any scorer),
    ``lse_c_best_offset`` / ``lse_d_best_offset`` (SyncNet's definitions, any scorer) and ``source``."""
    played = isinstance(result, PlayedLseResult)
    return {"offset_frames": int(result.offset), "lse_c": float(result.confidence), "lse_d": float(result.distance),
            "definition": "at offset 0 (the clip as played)" if played else "SyncNet (best offset)",
            "lse_c_at_0": confidence_at_zero(result),
            "lse_c_best_offset": best_offset_confidence(result),
            "lse_d_best_offset": float(getattr(result, "best_offset_distance", result.distance)),
            "source": source}
