"""Training the lip-sync stand-in (``metrics.lipsync``): audio features -> standardised mouth features, by regression.

Data: the clips of one or more corpora (``data/corpus``; mouth features from their stored landmarks) and, when
given, real talking-face videos (mouth features from dlib landmarks, cached per file under
``<cache>/lipsync/landmarks``). Real videos are split by person (:func:`real_split`: people from dlib face
descriptors, ``data.corpus.people``; ``data.corpus.splits.identity_split``), so the held-out people of
``metrics.lipsync_validate`` are never trained on. The loop is the project's one loop (``train/loop.py``): each step
draws ``batch_size`` frames with ``step_rng(seed, step)`` and minimises the mean squared error of each of the
``members`` networks (``lipsync.AudioToMouth``; the stand-in predicts their mean: a single network's offset rate
moved by up to 28 points with its training seed, results/lipsync-standin-validation.md).

:func:`train_standin` is what ``metrics.lipsync.default_lip_sync_scorer`` runs once when neither the official
``syncnet_v2.model`` nor a cached stand-in exists: it builds the default corpora (``CPU_CORPORA``) in the cache,
adds the training-split real clips of ``../shared/data/clips`` when present, trains at the CPU preset and writes the
file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..train.loop import RunContext, Stage, StepContext, TrainConfig, run, step_rng
from ..video import VIDEO_SUFFIXES
from .lipsync import (SAMPLES_PER_FRAME, AudioToMouth, AudioToMouthConfig, audio_features, mouth_code, save_standin,
                      standin_path)

__all__ = ["LipSyncTrainConfig", "SyncExample", "example_from_arrays", "corpus_examples", "real_clip_paths",
           "person_of", "real_people", "corpus_split", "real_split", "load_real_clip", "real_track", "video_examples",
           "LipSyncStage", "train_lipsync", "standin_corpus_dirs", "train_standin", "CPU_CORPORA"]

# the default corpora the CPU preset trains on (build_default_corpus arguments): two seeds (other face-model variants,
# sentences and styles), each without and with the breaths in the speech's pauses (Phenomena.pause_breaths, on in the
# default corpus since session 23), so that the judge of lip sync has seen mouths that open in silence and mouths that
# do not. Validated on the held-out people of all four (results/lipsync-standin-validation.md, session 25).
CPU_CORPORA = tuple(dict(n_clips=24, seed=seed, size=128, phenomena={"pause_breaths": breaths})
                    for seed in (0, 1) for breaths in (0.0, 1.0))
REAL_MAX_SECONDS = 12.0  # at most this much of each real video (landmark tracking costs ~45 ms per frame)


@dataclass
class LipSyncTrainConfig(TrainConfig):
    """Regression of the stand-in. No paper values exist for it: the defaults are the CPU preset's (project choices).
    Presets: ``tiny`` (CI), ``cpu`` (the cached model), ``paper`` (= ``cpu``)."""

    steps: int = 1500
    batch_size: int = 256  # frames per step
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 0
    device: str | None = "cpu"
    tensorboard: bool = False
    weight_decay: float = 1e-4
    real_weight: float = 2.0  # frames of real videos are drawn this many times as often as corpus frames
    members: int = 16  # AudioToMouthConfig.members: the mean of independently initialised networks (session 25)

    @classmethod
    def cpu(cls, **changes) -> "LipSyncTrainConfig":
        return cls(**changes)

    @classmethod
    def paper(cls, **changes) -> "LipSyncTrainConfig":
        return cls(**changes)

    @classmethod
    def tiny(cls, **changes) -> "LipSyncTrainConfig":
        return cls(**{**dict(steps=1000, batch_size=128, eval_every=1000, progress=False), **changes})


@dataclass
class SyncExample:
    """One clip: ``audio`` features ``[T, A]`` (``lipsync.audio_features``), ``mouth`` standardised ``[T, 5]``."""

    name: str
    person: str
    audio: np.ndarray
    mouth: np.ndarray
    real: bool = False


def example_from_arrays(name: str, person: str, landmarks: np.ndarray, audio: np.ndarray,
                        real: bool = False) -> SyncExample:
    """A training example from ``[T, 68, 2]`` landmarks (NaN rows allowed) and 16 kHz audio."""
    n = min(len(landmarks), len(audio) // SAMPLES_PER_FRAME)
    mouth = mouth_code(landmarks[:n]).astype(np.float32)
    return SyncExample(name, person, audio_features(audio, n), mouth, real)


def corpus_examples(corpus_dir, clips=None, *, detect: bool = False) -> list[SyncExample]:
    """Examples of a corpus's clips (ids or positions; None: all), mouth from the stored landmarks, or (``detect``)
    from dlib landmarks fitted on the clip's frames (``lipsync.lip_track``, what scoring sees on any video)."""
    from ..data.corpus.format import load_clip, load_index, select_clips
    from .lipsync import lip_track

    entries = select_clips(load_index(corpus_dir)["clips"], clips)
    out = []
    for e in entries:
        arrays = load_clip(corpus_dir, e)
        lm = lip_track(arrays["frames"], name=str(e["id"])).landmarks if detect else arrays["landmarks"]
        out.append(example_from_arrays(e["id"], f"corpus:{e.get('identity_id', 0)}", lm, arrays["audio"]))
    return out


# ---------------------------------------------------------------------------------------------
# real videos
# ---------------------------------------------------------------------------------------------
def real_clip_paths(folder) -> list[Path]:
    """Videos of ``folder`` that have sound: an audio track or a ``.wav`` of the same name beside them."""
    from ..video import probe_video

    folder = Path(folder)
    out = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        try:
            if probe_video(p)["has_audio"] or p.with_suffix(".wav").is_file():
                out.append(p)
        except Exception:  # noqa: BLE001 - an unreadable file is not a clip
            continue
    return out


def person_of(path) -> str:
    """A person id from a file name (conservative: unnamed clips of one source count as one person).

    ``*Obama*`` -> ``obama``; ``styletalk_<name>_...`` and ``sadtalker_WDA_<name>_...`` -> ``<name>``; otherwise
    the source prefix before the first ``_`` (``grid``, ``pcavs``, ...), so that no unnamed person can be in both
    splits.
    """
    s = Path(path).stem.lower()
    if "obama" in s:
        return "obama"
    for pattern in (r"styletalk_([a-z]+)", r"sadtalker_wda_([a-z]+)"):
        m = re.match(pattern, s)
        if m:
            return m.group(1)
    return s.split("_")[0]


def corpus_split(corpus_dir, heldout_fraction: float = 0.25, seed: int = 0):
    """The corpus's ``identity_split``; with one identity, the last quarter of its clips is held out."""
    from ..data.corpus.format import load_index
    from ..data.corpus.splits import identity_split

    index = load_index(corpus_dir)
    return identity_split(index, heldout_fraction=heldout_fraction, seed=seed,
                          min_heldout_clips=max(1, round(heldout_fraction * len(index["clips"]))))


def real_people(paths, max_seconds: float | None = REAL_MAX_SECONDS) -> list[str]:
    """A person per video from dlib face descriptors of ``EMBED_FRAMES`` frames (``data.corpus.people``: average-
    linkage clusters at dlib's 0.6; a ``people.csv`` beside the videos fixes the files it lists). Without the
    descriptor model, or for a video with no face, :func:`person_of` (file names)."""
    from ..data.corpus.people import PEOPLE_FILE, assign_people, read_people_csv
    from ..data.corpus.video_clip import EMBED_FRAMES

    paths = [Path(p) for p in paths]
    try:
        from .csim import DlibFaceEmbedder

        embedder = DlibFaceEmbedder()
    except (ImportError, RuntimeError):
        return [person_of(p) for p in paths]
    embeddings = []
    for p in paths:
        clip = load_real_clip(p, max_seconds)
        track = real_track(clip, p)
        t = np.flatnonzero(track.found)
        picks = t[np.unique(np.linspace(0, len(t) - 1, EMBED_FRAMES).round().astype(int))] if len(t) else t
        embeddings.append(np.stack([embedder.embed(clip.frames[i], track.landmarks[i]) for i in picks])
                          if len(picks) else None)
    csv = paths[0].parent / PEOPLE_FILE if paths else None
    names, _ = assign_people([p.name for p in paths], embeddings,
                             read_people_csv(csv) if csv is not None and csv.is_file() else None)
    return [n if e is not None else person_of(p) for n, e, p in zip(names, embeddings, paths)]


def real_split(paths, heldout_fraction: float = 0.34, seed: int = 0):
    """``(train paths, held-out paths)``, identity-disjoint by :func:`real_people` (``identity_split``)."""
    from ..data.corpus.splits import identity_split

    paths = list(paths)
    index = {"clips": [{"id": str(p), "identity_id": person} for p, person in zip(paths, real_people(paths))]}
    split = identity_split(index, heldout_fraction=heldout_fraction, seed=seed)
    by = {str(p): p for p in paths}
    return [by[i] for i in split.train], [by[i] for i in split.heldout]


def load_real_clip(path, max_seconds: float | None = REAL_MAX_SECONDS):
    """A :class:`~sadtalker_lib.metrics.video_io.Clip` at 25 fps, 256 px, 16 kHz; a silent video takes the ``.wav``
    of the same name."""
    from ..video import decode_audio
    from .video_io import AUDIO_RATE, EVAL_FPS, Clip, load_clip

    path = Path(path)
    max_frames = None if max_seconds is None else int(round(max_seconds * EVAL_FPS))
    clip = load_clip(path, max_frames=max_frames)
    if clip.audio is None and path.with_suffix(".wav").is_file():
        audio = decode_audio(path.with_suffix(".wav"), AUDIO_RATE)[: clip.num_frames * SAMPLES_PER_FRAME]
        clip = Clip(frames=clip.frames, fps=clip.fps, audio=audio, sample_rate=AUDIO_RATE, name=clip.name,
                    notes=[f"{path.name}: audio from {path.with_suffix('.wav').name}"])
    return clip


def real_track(clip, path, cache: bool = True):
    """The dlib face track of ``clip`` (``lipsync.lip_track``; cached under ``<cache>/lipsync/landmarks`` by file,
    size and length)."""
    from ..paths import cache_dir
    from .faces import FaceTrack
    from .lipsync import LIP_FACE_PX, lip_track

    path = Path(path)
    st = path.stat()
    key = f"{path.stem}-{st.st_size}-{int(st.st_mtime)}-{clip.num_frames}-{clip.frames.shape[1]}-lip{LIP_FACE_PX}.npz"
    file = cache_dir() / "lipsync" / "landmarks" / key
    if cache and file.is_file():
        with np.load(file) as z:
            return FaceTrack(boxes=z["boxes"], landmarks=z["landmarks"], found=z["found"], name=clip.name)
    track = lip_track(clip.frames, name=clip.name)
    if cache:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, boxes=track.boxes, landmarks=track.landmarks, found=track.found)
    return track


def video_examples(paths, max_seconds: float | None = REAL_MAX_SECONDS, log=None) -> list[SyncExample]:
    """Examples of real videos (dlib landmarks); a video with no face in over 20 % of its frames is skipped."""
    out = []
    for p in paths:
        clip = load_real_clip(p, max_seconds)
        track = real_track(clip, p)
        if clip.audio is None or track.missing_fraction > 0.2:
            if log:
                log(f"lip sync: skipping {Path(p).name} (no audio or too few faces)")
            continue
        out.append(example_from_arrays(Path(p).stem, person_of(p), track.landmarks, clip.audio, real=True))
    return out


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
class LipSyncStage(Stage):
    """:class:`AudioToMouth` regression on the frames of :class:`SyncExample` clips (MSE)."""

    name, stem = "lip-sync stand-in", "lipsync"

    def __init__(self, examples: list[SyncExample], config: LipSyncTrainConfig | None = None,
                 heldout: list[SyncExample] | None = None):
        if not examples:
            raise ValueError("no training clips for the lip-sync stand-in")
        self.config = config or LipSyncTrainConfig()
        self.x = torch.from_numpy(np.concatenate([e.audio for e in examples])).float()
        self.y = torch.from_numpy(np.concatenate([e.mouth for e in examples])).float()
        w = np.concatenate([np.full(len(e.mouth), self.config.real_weight if e.real else 1.0) for e in examples])
        self.p = w / w.sum()
        self.heldout = heldout

    def build(self, ctx: RunContext) -> None:
        torch.manual_seed(self.config.seed)
        self.model = AudioToMouth(AudioToMouthConfig(in_dim=self.x.shape[1], out_dim=self.y.shape[1],
                                                     members=self.config.members))
        self.modules = {"lipsync": self.model}
        self.train_modules = {"lipsync": self.model}
        self.optimizers = {"main": torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                                     betas=tuple(self.config.adam_betas),
                                                     weight_decay=self.config.weight_decay)}

    def num_examples(self) -> int:
        return len(self.x)

    def batch_indices(self, step: int) -> np.ndarray:
        return step_rng(self.config.seed, step).choice(len(self.x), size=self.config.batch_size, p=self.p)

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        idx = torch.as_tensor(ctx.indices)
        pred = ctx.module("lipsync")(self.x[idx].to(ctx.device), per_member=True)  # [members, B, F]
        loss = F.mse_loss(pred, self.y[idx].to(ctx.device).expand_as(pred))  # each member on its own error
        ctx.update("main", loss)
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def evaluate(self, ctx: RunContext) -> dict[str, float] | None:
        if not self.heldout:
            return None
        was = self.model.training
        self.model.eval()
        x = torch.from_numpy(np.concatenate([e.audio for e in self.heldout]))
        y = torch.from_numpy(np.concatenate([e.mouth for e in self.heldout]))
        mse = float(F.mse_loss(self.model(x), y))
        self.model.train(was)
        return {"mse": mse, "mse_baseline_zero": float(y.square().mean())}  # baseline: predict the clip mean


def train_lipsync(examples: list[SyncExample], config: LipSyncTrainConfig | None = None,
                  heldout: list[SyncExample] | None = None) -> AudioToMouth:
    """Train the stand-in's network through the shared loop (no files); returns it in eval mode."""
    stage = LipSyncStage(examples, config, heldout)
    run(stage, None)
    return stage.model.eval()


def standin_corpus_dirs(log=print) -> list[Path]:
    """``<cache>/lipsync/default_corpus_v<DEFAULT_CORPUS_VERSION>_seed<S>_breaths<B>``: the CPU preset's default
    corpora (``CPU_CORPORA``), each built there when missing (so rebuilt when the builder's version changes)."""
    from ..data.corpus import build_default_corpus
    from ..data.corpus.default import DEFAULT_CORPUS_VERSION
    from ..data.corpus.format import is_corpus
    from ..paths import cache_dir

    out = []
    for spec in CPU_CORPORA:
        breaths = spec["phenomena"]["pause_breaths"]
        name = f"default_corpus_v{DEFAULT_CORPUS_VERSION}_seed{spec['seed']}_breaths{breaths:g}"
        folder = cache_dir() / "lipsync" / name
        if not is_corpus(folder):
            log(f"lip sync: building a default corpus ({spec['n_clips']} clips, seed {spec['seed']}, breaths "
                f"{breaths:g}) in {folder}")
            build_default_corpus(folder, **spec)
        out.append(folder)
    return out


def train_standin(out_path=None, *, config: LipSyncTrainConfig | None = None, corpus_dir=None, video_dir=None,
                  log=print) -> Path:
    """Train the stand-in at the CPU preset and write it (default :func:`standin_path`).

    ``corpus_dir``: a corpus folder or a list of them (default: the CPU preset's default corpora, built once under
    :func:`standin_corpus_dirs`; the training split of each is used); ``video_dir``: real videos (default
    ``../shared/data/clips`` when present; only the training side of :func:`real_split` is used; False: none).
    """
    from ..paths import shared_data_dir

    out_path = Path(out_path) if out_path is not None else standin_path()
    if corpus_dir is None:
        corpus_dirs = standin_corpus_dirs(log)
    else:
        corpus_dirs = [corpus_dir] if isinstance(corpus_dir, (str, Path)) else list(corpus_dir)
    examples = []
    for folder in corpus_dirs:  # held-out clips: lipsync_validate
        examples += corpus_examples(folder, corpus_split(folder).train)
    video_dir = video_dir if video_dir is not None else shared_data_dir("clips")
    used = []
    if video_dir:  # False: the corpus only
        train_paths, _ = real_split(real_clip_paths(video_dir))
        log(f"lip sync: dlib landmarks of {len(train_paths)} training-split real clips in {video_dir} (cached)")
        real = video_examples(train_paths, log=log)
        examples += real
        used = [e.name for e in real]
    model = train_lipsync(examples, config or LipSyncTrainConfig.cpu())
    notes = (f"corpora {', '.join(str(f) for f in corpus_dirs)} ({len(examples) - len(used)} clips); real clips: "
             f"{', '.join(used) or 'none'}")
    path = save_standin(model, out_path, notes=notes)
    log(f"lip sync: wrote {path} (LSE-C / LSE-D [landmark stand-in])")
    return path
