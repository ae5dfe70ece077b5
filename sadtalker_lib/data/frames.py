"""Training data of FaceRender (paper Sec. 3.3): clips of frames + coefficients, and (source, driving) pairs.

    FaceRenderClips: per clip frames uint8 [T, 3, S, S] (resized to the renderer's size) and coefficients [T, C]
    FramePairs:      a batch of (source, driving) frames of the same clip with their coefficient windows

face-vid2vid (stage 1) learns from the frames of a pair; the MappingNet (stage 2) from the driving frame's
coefficient window (radius 13, ``steps.windows.frame_windows``) and the source's constant window
(``steps.windows.source_window``, as at inference).

Held-out frames (:func:`split_frames`): whole held-out people (``data.corpus.splits.identity_split``) AND the later
part of every clip of the training people (``later_fraction`` of its frames), so a renderer is scored both on
people it never saw and on later time ranges of people it did see. :func:`split_clips` (last clips held out) stays
for corpora without people.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..coeffs import MOTION_DIM, POSE
from ..steps.windows import SEMANTIC_RADIUS, frame_windows, source_window

__all__ = ["FramePairs", "FaceRenderClips", "Segment", "FrameSplit", "split_frames", "split_clips",
           "LATER_FRACTION", "landmarks_to_grid", "check_pair_sampling"]

LATER_FRACTION = 0.25  # held-out share of each training person's clip: its last quarter (project choice)


class Segment(NamedTuple):
    """Frames ``start:stop`` of clip ``clip`` (a corpus clip id)."""

    clip: str
    start: int
    stop: int


@dataclass
class FramePairs:
    """A batch of (source, driving) pairs from the same clips.

    source / driving [B, 3, S, S] float in [0, 1]; source_coeffs / driving_coeffs [B, C] (exp 64 | angle 3 |
    trans 3); source_window [B, C, W] (the source coefficients repeated, as at inference); driving_window
    [B, C, W] (frames t-r .. t+r, clamped at the clip ends). clip / source_index / driving_index [B] long.
    """

    source: torch.Tensor
    driving: torch.Tensor
    source_coeffs: torch.Tensor
    driving_coeffs: torch.Tensor
    source_window: torch.Tensor
    driving_window: torch.Tensor
    clip: torch.Tensor
    source_index: torch.Tensor
    driving_index: torch.Tensor
    source_landmarks: torch.Tensor
    driving_landmarks: torch.Tensor

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, i) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name)[i] for f in fields(self)})

    def to(self, device) -> "FramePairs":
        return FramePairs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


N_LANDMARKS = 68


def landmarks_to_grid(landmarks_px: np.ndarray | torch.Tensor, frame_size_px: int) -> torch.Tensor:
    """Landmarks [..., 68, 2] as (x, row) pixels of a square frame of side ``frame_size_px`` -> the same points
    in the normalised coordinates of the renderer's keypoints and warps (x along the width, y along the
    height, -1 at the first pixel centre and +1 at the last: ``models.facevid2vid.blocks.make_coordinate_grid``).
    Independent of the size the frames are resized to."""
    lm = torch.as_tensor(np.asarray(landmarks_px), dtype=torch.float32)
    if lm.shape[-2:] != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [..., {N_LANDMARKS}, 2], got {tuple(lm.shape)}")
    return lm * (2.0 / (frame_size_px - 1)) - 1.0


def _resize_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, size, size] (anti-aliased bilinear when the size changes)."""
    x = torch.as_tensor(np.asarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[2:] == (size, size):
        return x.to(torch.uint8)
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def check_pair_sampling(motion_candidates: int, mouth_share: float) -> None:
    """ValueError unless ``FaceRenderClips.sample`` can draw pairs with these settings (the configs call it)."""
    if motion_candidates < 1:
        raise ValueError(f"motion_candidates must be >= 1, got {motion_candidates}")
    if not 0.0 <= mouth_share <= 1.0:
        raise ValueError(f"mouth_pairs / mouth_share is a share of the batch in [0, 1], got {mouth_share}")
    if mouth_share and motion_candidates < 2:
        raise ValueError("mouth pairs are picked among motion_candidates driving frames: set motion_candidates >= 2")


class FaceRenderClips:
    """Clips held in memory for FaceRender training: frames (resized to ``image_size``) and coefficients.

    frames: per clip uint8 [T, H, W, 3] (the corpus format); coeffs: per clip [T, C] (C = 70, or 73 with crop
    params); landmarks (optional): per clip [T, 68, 2] (x, row) pixels of ``frames`` (the corpus format), kept
    as normalised coordinates (``landmarks_to_grid``; NaN when not given). :meth:`from_corpus` reads a corpus
    folder (``data.corpus`` format, either builder).
    """

    def __init__(self, frames: Sequence, coeffs: Sequence, image_size: int, ids: Sequence[str] | None = None,
                 landmarks: Sequence | None = None):
        if len(frames) != len(coeffs) or not len(frames):
            raise ValueError(f"need as many coefficient arrays as frame arrays (>= 1), "
                             f"got {len(frames)} and {len(coeffs)}")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.image_size = int(image_size)
        self.frames = [_resize_frames(f, self.image_size) for f in frames]
        self.coeffs = [torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in coeffs]
        for k, (f, c) in enumerate(zip(self.frames, self.coeffs)):
            if c.ndim != 2 or c.shape[0] != f.shape[0] or c.shape[1] < MOTION_DIM:
                raise ValueError(f"clip {k}: coefficients {tuple(c.shape)} do not fit "
                                 f"{f.shape[0]} frames x >= {MOTION_DIM}")
        if landmarks is not None and len(landmarks) != len(frames):
            raise ValueError(f"{len(landmarks)} landmark arrays for {len(frames)} clips")
        self.landmarks = []
        for k, f in enumerate(frames):
            t, side = self.frames[k].shape[0], np.asarray(f).shape[1]
            if landmarks is None:
                self.landmarks.append(torch.full((t, N_LANDMARKS, 2), float("nan")))
                continue
            lm = landmarks_to_grid(landmarks[k], side)
            if lm.shape[0] != t:
                raise ValueError(f"clip {k}: {lm.shape[0]} landmark frames for {t} frames")
            self.landmarks.append(lm)
        self.ids = list(ids) if ids is not None else [f"clip_{k:04d}" for k in range(len(self.frames))]
        self._windows: dict[int, list[torch.Tensor]] = {}
        self._mouth: dict[int, np.ndarray] = {}

    @classmethod
    def from_corpus(cls, root: str | os.PathLike, clips: Sequence | None = None,
                    image_size: int = 64) -> "FaceRenderClips":
        """Frames + coefficients of a corpus folder (``clips``: ids or positions; default all)."""
        from .corpus.format import load_clip, load_index, select_clips

        entries = select_clips(load_index(root)["clips"], clips)
        frames, coeffs, landmarks = [], [], []
        for e in entries:
            a = load_clip(root, e)
            frames.append(a["frames"])
            coeffs.append(a["coeffs"])
            landmarks.append(a["landmarks"])
        return cls(frames, coeffs, image_size, ids=[e["id"] for e in entries], landmarks=landmarks)

    @classmethod
    def from_segments(cls, root: str | os.PathLike, segments: Sequence[Segment],
                      image_size: int = 64) -> "FaceRenderClips":
        """One clip per :class:`Segment` (frames start:stop of a corpus clip); ids ``<clip>[start:stop]``."""
        from .corpus.format import load_clip, load_index, select_clips

        if not segments:
            raise ValueError("no segments given")
        index = load_index(root)["clips"]
        cache: dict[str, dict] = {}
        frames, coeffs, landmarks, ids = [], [], [], []
        for seg in segments:
            if seg.clip not in cache:
                cache[seg.clip] = load_clip(root, select_clips(index, [seg.clip])[0])
            a = cache[seg.clip]
            if not 0 <= seg.start < seg.stop <= len(a["coeffs"]):
                raise ValueError(f"segment {seg} outside the {len(a['coeffs'])} frames of {seg.clip}")
            frames.append(a["frames"][seg.start:seg.stop])
            coeffs.append(a["coeffs"][seg.start:seg.stop])
            landmarks.append(a["landmarks"][seg.start:seg.stop])
            ids.append(f"{seg.clip}[{seg.start}:{seg.stop}]")
        return cls(frames, coeffs, image_size, ids=ids, landmarks=landmarks)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_frames(self) -> int:
        return sum(f.shape[0] for f in self.frames)

    @property
    def coeff_channels(self) -> int:
        return self.coeffs[0].shape[1]

    def windows(self, k: int, radius: int = SEMANTIC_RADIUS) -> torch.Tensor:
        """Coefficient windows of clip k: [T, C, 2 radius + 1] (``steps.windows.frame_windows``, cached)."""
        cache = self._windows.setdefault(radius, [None] * len(self))
        if cache[k] is None:
            cache[k] = frame_windows(self.coeffs[k], radius).to(torch.float32)
        return cache[k]

    def pairs(self, clip: Sequence[int], source: Sequence[int], driving: Sequence[int],
              radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """The pairs (clip[i], frame source[i]) -> (clip[i], frame driving[i])."""
        clip, source, driving = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (clip, source, driving))
        src, drv, sc, dc, sw, dw, sl, dl = [], [], [], [], [], [], [], []
        for k, s, d in zip(clip, source, driving):
            f, c = self.frames[k], self.coeffs[k]
            sl.append(self.landmarks[k][s])
            dl.append(self.landmarks[k][d])
            src.append(f[s])
            drv.append(f[d])
            sc.append(c[s])
            dc.append(c[d])
            sw.append(source_window(c[s], radius))
            dw.append(self.windows(int(k), radius)[d])
        as_float = lambda xs: torch.stack(xs).float() / 255.0  # noqa: E731
        return FramePairs(source=as_float(src), driving=as_float(drv), source_coeffs=torch.stack(sc),
                          driving_coeffs=torch.stack(dc), source_window=torch.stack(sw),
                          driving_window=torch.stack(dw), clip=torch.as_tensor(clip),
                          source_index=torch.as_tensor(source), driving_index=torch.as_tensor(driving),
                          source_landmarks=torch.stack(sl), driving_landmarks=torch.stack(dl))

    def mouth_opening(self, k: int) -> np.ndarray:
        """Inner-lip gap of clip k's frames over the eye-corner distance [T] (``morphable.render.mouth_opening``;
        NaN without landmarks), cached."""
        from ..morphable.render import mouth_opening

        if k not in self._mouth:
            self._mouth[k] = mouth_opening(self.landmarks[k]).numpy()
        return self._mouth[k]

    def sample(self, batch_size: int, rng: np.random.Generator, radius: int = SEMANTIC_RADIUS,
               motion_candidates: int = 1, mouth_share: float = 0.0, time_flip: bool = False) -> FramePairs:
        """Random pairs: a clip, then two independent frames of it (face-vid2vid's sampling).

        motion_candidates > 1: draw that many driving frames per pair and keep the one whose head pose (the
        coefficients' angles and translation) differs most from the source's (pairs biased to large motion).
        mouth_share: the first ``round(mouth_share * batch_size)`` pairs keep instead the candidate whose mouth
        opening (:meth:`mouth_opening`) differs most from the source's (pairs biased to speech; head pose where the
        clip has no landmarks). time_flip: each pair's two frames swapped with probability 0.5 (face-vid2vid's
        ``time_flip`` augmentation, ``data.augment``; drawn last, so the other draws do not change).
        """
        if mouth_share:
            check_pair_sampling(motion_candidates, mouth_share)
        clip = rng.integers(len(self), size=batch_size)
        lengths = np.array([self.frames[k].shape[0] for k in clip])
        source = (rng.random(batch_size) * lengths).astype(np.int64)
        driving = (rng.random((max(1, motion_candidates), batch_size)) * lengths).astype(np.int64)
        if motion_candidates > 1:
            pose = [self.coeffs[k][:, POSE].numpy() for k in range(len(self))]
            moved = np.array([[np.abs(pose[k][d] - pose[k][s]).sum() for k, s, d in zip(clip, source, row)]
                              for row in driving])  # [candidates, B]
            n_mouth = int(round(mouth_share * batch_size))
            if n_mouth:
                gap = [self.mouth_opening(int(k)) for k in clip[:n_mouth]]
                mouth = np.array([[abs(g[d] - g[s]) for g, s, d in zip(gap, source, row)]
                                  for row in driving[:, :n_mouth]])  # [candidates, n_mouth]
                has = np.isfinite(mouth).all(0)
                moved[:, :n_mouth][:, has] = mouth[:, has]
            driving = driving[moved.argmax(0), np.arange(batch_size)]
        else:
            driving = driving[0]
        if time_flip:
            swap = rng.random(batch_size) < 0.5
            source, driving = np.where(swap, driving, source), np.where(swap, source, driving)
        return self.pairs(clip, source, driving, radius)

    def first_frame_pairs(self, per_clip: int) -> FramePairs:
        """Per clip: its first frame as the source (as at inference: one portrait) and ``per_clip`` evenly spaced
        later frames as driving frames (the evaluation pairs of :func:`split_frames`' held-out segments)."""
        clip, source, driving = [], [], []
        for k, f in enumerate(self.frames):
            t = f.shape[0]
            drv = np.unique(np.linspace(1, t - 1, min(per_clip, t - 1)).round().astype(np.int64)) if t > 1 else [0]
            clip += [k] * len(drv)
            source += [0] * len(drv)
            driving += list(drv)
        return self.pairs(clip, source, driving)

    def fixed_pairs(self, n: int, seed: int = 0, radius: int = SEMANTIC_RADIUS) -> FramePairs:
        """``n`` pairs that depend only on ``seed`` (the held-out set of a run)."""
        return self.sample(n, np.random.default_rng([int(seed), 0xFACE]), radius)


def split_clips(root: str | os.PathLike, n_heldout: int = 1) -> tuple[list[str], list[str]]:
    """Clip ids of a corpus folder split into (train, held-out): the last ``n_heldout`` clips are held out."""
    from .corpus.format import load_index

    ids = [c["id"] for c in load_index(root)["clips"]]
    if not 0 < n_heldout < len(ids):
        raise ValueError(f"n_heldout must be in 1..{len(ids) - 1} for a corpus of {len(ids)} clips, got {n_heldout}")
    return ids[:-n_heldout], ids[-n_heldout:]


@dataclass
class FrameSplit:
    """Where a FaceRender run trains and is scored: :class:`Segment` lists ``train`` (the earlier frames of the
    training people), ``later_time`` (the later frames of the same clips) and ``heldout_people`` (every frame of
    the held-out people's clips). ``identity_disjoint``: False when the corpus has one person only (then
    ``heldout_people`` holds the last clips, the same person)."""

    train: list[Segment]
    later_time: list[Segment]
    heldout_people: list[Segment]
    identity_disjoint: bool = True
    people: dict[str, list] = field(default_factory=dict)

    @property
    def heldout(self) -> list[Segment]:
        return self.later_time + self.heldout_people

    def describe(self) -> str:
        n = lambda segs: sum(s.stop - s.start for s in segs)  # noqa: E731
        kind = "" if self.identity_disjoint else " (same person: the corpus has one)"
        return (f"train {len(self.train)} segments / {n(self.train)} frames; held out: later time "
                f"{n(self.later_time)} frames of the training people, held-out people{kind} "
                f"{len(self.heldout_people)} clips / {n(self.heldout_people)} frames")

    def to_json(self) -> dict:
        seg = lambda segs: [f"{s.clip}[{s.start}:{s.stop}]" for s in segs]  # noqa: E731
        return {"train": seg(self.train), "later_time": seg(self.later_time),
                "heldout_people": seg(self.heldout_people),
                "kind": ["identity_disjoint" if self.identity_disjoint else "same_person_only"],
                **{k: [str(p) for p in v] for k, v in self.people.items()}}


def split_frames(root: str | os.PathLike, heldout_fraction: float = 0.25, later_fraction: float = LATER_FRACTION,
                 seed: int = 0, min_frames: int = 8) -> FrameSplit:
    """Identity- and time-aware split of a corpus folder (see the module docstring).

    heldout_fraction: share of the people held out whole (``identity_split``; the corpus's stored split when it
    has one). later_fraction: share of each training clip's frames held out at its end. Clips with fewer than
    ``2 min_frames`` frames stay whole in training.
    """
    from .corpus.format import load_index
    from .corpus.splits import identity_split

    if not 0 < later_fraction < 1:
        raise ValueError(f"later_fraction must be in (0, 1), got {later_fraction}")
    index = load_index(root)
    stored = index.get("split") or {}
    if stored.get("train") and stored.get("heldout"):
        train_ids, held_ids = list(stored["train"]), list(stored["heldout"])
        disjoint = bool(stored.get("identity_disjoint", True))
        people = {"train_people": stored.get("train_identities", []),
                  "heldout_people_ids": stored.get("heldout_identities", [])}
    else:
        sp = identity_split(index, heldout_fraction, seed)
        train_ids, held_ids, disjoint = sp.train, sp.heldout, sp.identity_disjoint
        people = {"train_people": sp.train_identities, "heldout_people_ids": sp.heldout_identities}
    length = {c["id"]: int(c["n_frames"]) for c in index["clips"]}
    train, later = [], []
    for cid in train_ids:
        t = length[cid]
        cut = t - int(round(later_fraction * t))
        if t < 2 * min_frames or cut < min_frames:
            train.append(Segment(cid, 0, t))
            continue
        train.append(Segment(cid, 0, cut))
        later.append(Segment(cid, cut, t))
    held = [Segment(cid, 0, length[cid]) for cid in held_ids]
    return FrameSplit(train, later, held, disjoint, people)
