"""Does the lip-sync metric work? In-sync copies and copies with the audio shifted, on held-out clips.

For each held-out clip: the in-sync copy and copies with the audio delayed by ``SHIFTS`` frames
(``lipsync.delay_audio``). Two rates (the acceptance of the experiments issue: both >= 0.9):

* ``offset_rate``: fraction of copies whose estimated offset is within ``tolerance`` frames of the truth
  (``-shift``, SyncNet's sign);
* ``confidence0_rate``: fraction of (clip, shift) pairs where the reported LSE-C of the in-sync copy is above the
  shifted copy's: the stand-in's ``LSE-C [landmark stand-in, at offset 0]`` (``lipsync.confidence_at_zero``, the
  confidence of the clip as played; the acceptance's LSE-C);
* ``confidence_rate``: the same with SyncNet's own best-offset definition (``median - min`` over offsets, kept
  beside as ``lse_c_best_offset``): it scores the sharpness of the best alignment wherever it lies, so a shifted
  copy keeps nearly the same value and this rate stays near a coin flip whatever the model (reported, not an
  acceptance).

A diagnostic beside them: ``relative_rate``, the fraction of shifted copies whose offset moved by ``-shift`` (+-1)
from the in-sync copy's estimate (shift detection without trusting that the original file is in sync).

Run ``python -m sadtalker_lib.metrics.lipsync_validate`` for the full validation: the scorer of
``default_lip_sync_scorer`` (trained once at the CPU preset when missing) on (a) the held-out clips of its default
corpus (faces found with dlib on the frames, ``lipsync.lip_track``, as ``evaluate`` does) and (b) the held-out
people of ``../shared/data/clips`` (``lipsync_train.real_split``: people from dlib face descriptors), when present.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .faces import FaceTrack, track_faces
from .lipsync import LandmarkSyncScorer, best_offset_confidence, confidence_at_zero, delay_audio, lip_track
from .video_io import Clip

__all__ = ["SHIFTS", "ACCEPT", "ValidationResult", "validate", "corpus_heldout", "real_heldout", "main"]

SHIFTS = (-8, -3, 3, 8)  # frames of audio delay (negative: audio advanced)
ACCEPT = 0.9  # the experiments issue's acceptance: both rates >= 90 %


@dataclass
class ValidationResult:
    offset_rate: float
    confidence_rate: float
    relative_rate: float
    confidence0_rate: float
    # one row per (clip, shift): offset, lse_c_at_0 (the reported LSE-C), lse_c_best_offset (SyncNet's), lse_d
    # (as the scorer reports it), ok flags
    rows: pd.DataFrame = field(repr=False)

    def describe(self, name: str) -> str:
        n = self.rows["clip"].nunique()
        return (f"{name}: {n} held-out clips x {1 + len(SHIFTS)} copies: offset within +-1 frame "
                f"{self.offset_rate:.0%}, LSE-C [at offset 0] in-sync > shifted {self.confidence0_rate:.0%} "
                f"(SyncNet's best-offset LSE-C: {self.confidence_rate:.0%}; diagnostic: shift "
                f"detected relative to the in-sync estimate {self.relative_rate:.0%})")

    @property
    def passed(self) -> bool:
        """Both acceptance rates (offset, LSE-C at offset 0) >= ``ACCEPT``."""
        return self.offset_rate >= ACCEPT and self.confidence0_rate >= ACCEPT


def validate(scorer, clips: list[tuple[Clip, FaceTrack | None]], shifts=SHIFTS, tolerance: int = 1,
             log=None) -> ValidationResult:
    """The two rates (module docstring) of ``scorer`` on ``(clip, face track or None)`` pairs."""
    rows = []
    kw = {"retrack": False} if isinstance(scorer, LandmarkSyncScorer) else {}
    for clip, track in clips:
        if track is None:
            track = lip_track(clip.frames, name=clip.name) if kw else track_faces(clip.frames, name=clip.name)
        base = scorer.score(clip, track, **kw)
        c0, cb = confidence_at_zero(base), best_offset_confidence(base)
        rows.append(dict(clip=clip.name, shift=0, offset=base.offset, lse_c_at_0=c0, lse_c_best_offset=cb,
                         lse_d=base.distance, offset_ok=abs(base.offset) <= tolerance, conf_ok=np.nan, conf0_ok=np.nan,
                         relative_ok=np.nan))
        for s in shifts:
            r = scorer.score(delay_audio(clip, s), track, **kw)
            rows.append(dict(clip=clip.name, shift=s, offset=r.offset, lse_c_at_0=confidence_at_zero(r),
                             lse_c_best_offset=best_offset_confidence(r), lse_d=r.distance,
                             offset_ok=abs(r.offset + s) <= tolerance,
                             conf_ok=float(cb > best_offset_confidence(r)),
                             conf0_ok=float(c0 > confidence_at_zero(r)),
                             relative_ok=float(abs(r.offset - base.offset + s) <= tolerance)))
        if log:
            part = [r for r in rows if r["clip"] == clip.name]
            log(f"  {clip.name:44s} offsets {[r['offset'] for r in part]} "
                f"LSE-C at 0 {[round(r['lse_c_at_0'], 3) for r in part]} "
                f"best-offset {[round(r['lse_c_best_offset'], 3) for r in part]}")
    df = pd.DataFrame(rows)
    return ValidationResult(float(df["offset_ok"].mean()), float(df["conf_ok"].dropna().mean()),
                            float(df["relative_ok"].dropna().mean()), float(df["conf0_ok"].dropna().mean()), df)


def corpus_heldout(corpus_dir, clip_ids, *, detect: bool = True) -> list[tuple[Clip, FaceTrack | None]]:
    """Corpus clips as ``(Clip, track)``: ``detect`` leaves the track to ``validate`` (dlib on the frames,
    ``lipsync.lip_track``, as ``evaluate`` does); otherwise the
    corpus's stored landmarks are the track (fast, for CI)."""
    from ..data.corpus.format import load_clip

    out = []
    for cid in clip_ids:
        a = load_clip(corpus_dir, cid)
        clip = Clip(frames=a["frames"], audio=a["audio"], name=str(cid))
        track = None
        if not detect:
            lm = a["landmarks"].astype(np.float64)
            box = np.concatenate([lm.min(1), lm.max(1)], 1)
            track = FaceTrack(boxes=box, landmarks=lm, found=np.ones(len(lm), bool), name=str(cid))
        out.append((clip, track))
    return out


def real_heldout(video_dir, *, max_seconds: float | None = 12.0) -> list[tuple[Clip, FaceTrack]]:
    """The held-out people's clips of ``video_dir`` (``real_split``) with cached dlib tracks; clips with no face in
    over 20 % of the frames are left out."""
    from .lipsync_train import load_real_clip, real_clip_paths, real_split, real_track

    _, held = real_split(real_clip_paths(video_dir))
    out = []
    for p in held:
        clip = load_real_clip(p, max_seconds)
        track = real_track(clip, p)
        if clip.audio is not None and track.missing_fraction <= 0.2:
            out.append((clip, track))
    return out


def main(argv=None) -> int:
    from ..paths import shared_data_dir
    from .lipsync import default_lip_sync_scorer
    from .lipsync_train import corpus_split, standin_corpus_dir

    ap = argparse.ArgumentParser(prog="python -m sadtalker_lib.metrics.lipsync_validate", description=__doc__)
    ap.add_argument("--corpus", default=None, help="corpus folder (default: the stand-in's cached default corpus)")
    ap.add_argument("--videos", default=None, help="real clips folder (default: ../shared/data/clips)")
    ap.add_argument("--heldout-fraction", type=float, default=0.25)
    args = ap.parse_args(argv)
    scorer = default_lip_sync_scorer()
    print(f"lip-sync scorer: {scorer.label}")
    corpus = args.corpus or standin_corpus_dir()
    split = corpus_split(corpus, args.heldout_fraction)
    print(f"default corpus {corpus}: {split.describe()}")
    res = validate(scorer, corpus_heldout(corpus, split.heldout), log=print)
    print(res.describe("default corpus held-out"))
    videos = args.videos or shared_data_dir("clips")
    if videos is not None:
        res = validate(scorer, real_heldout(videos), log=print)
        print(res.describe(f"real clips held-out ({videos})"))
    else:
        print("real clips: ../shared/data/clips not found, skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
