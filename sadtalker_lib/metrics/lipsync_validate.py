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

Two diagnostics beside them, for files that may not be in sync themselves (real videos often are not):
``relative_rate``, the fraction of shifted copies whose offset moved by ``-shift`` (+-1) from the in-sync copy's
estimate (shift detection without trusting the file's own sync), and per clip a model-free estimate of the file's
offset (:func:`loudness_lag`: the lag at which the dlib inner-lip aperture correlates best with the audio's loudness,
no trained model) beside the stand-in's estimate for the in-sync copy (``ValidationResult.model_free_agreement``).

Run ``python -m sadtalker_lib.metrics.lipsync_validate`` for the full validation: the scorer of
``default_lip_sync_scorer`` (trained once at the CPU preset when missing) on (a) the held-out clips of each of its
default corpora (``lipsync_train.CPU_CORPORA``; each alone and all together, :func:`pooled`; faces found with dlib on
the frames, ``lipsync.lip_track``, as ``evaluate`` does) and (b) the held-out people of ``../shared/data/clips``
(``lipsync_train.real_split``: people from dlib face descriptors), when present.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .faces import FaceTrack, track_faces
from .lipsync import LandmarkSyncScorer, best_offset_confidence, confidence_at_zero, delay_audio, lip_track
from .video_io import Clip

__all__ = ["SHIFTS", "ACCEPT", "MODEL_FREE_MAX_LAG", "ValidationResult", "validate", "pooled", "loudness_lag",
           "best_lag", "corpus_heldout", "real_heldout", "main"]

SHIFTS = (-8, -3, 3, 8)  # frames of audio delay (negative: audio advanced)
ACCEPT = 0.9  # the experiments issue's acceptance: both rates >= 90 %
MODEL_FREE_MAX_LAG = 10  # frames searched by loudness_lag (0.4 s each way)


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
    def model_free_agreement(self) -> tuple[int, int]:
        """(clips whose in-sync estimate is within +-1 frame of :func:`loudness_lag`'s, clips)."""
        base = self.rows[self.rows["shift"] == 0]
        return int((base["offset"] - base["model_free_offset"]).abs().le(1).sum()), len(base)

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
        try:
            free, free_r = loudness_lag(clip, track)
        except ValueError:  # too few frames with a face, or a still mouth: no model-free estimate
            free, free_r = np.nan, np.nan
        rows.append(dict(clip=clip.name, shift=0, offset=base.offset, lse_c_at_0=c0, lse_c_best_offset=cb,
                         lse_d=base.distance, offset_ok=abs(base.offset) <= tolerance, conf_ok=np.nan, conf0_ok=np.nan,
                         relative_ok=np.nan, model_free_offset=free, model_free_r=free_r))
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
                f"best-offset {[round(r['lse_c_best_offset'], 3) for r in part]}; model-free offset of the file "
                f"{free:+.0f} (r {free_r:.2f})")
    return _result(pd.DataFrame(rows))


def _result(df: pd.DataFrame) -> ValidationResult:
    return ValidationResult(float(df["offset_ok"].mean()), float(df["conf_ok"].dropna().mean()),
                            float(df["relative_ok"].dropna().mean()), float(df["conf0_ok"].dropna().mean()), df)


def pooled(results: dict[str, ValidationResult]) -> ValidationResult:
    """One result over the copies of several (name -> result; clip names become ``name/clip``)."""
    if not results:
        raise ValueError("nothing to pool: no validation results")
    return _result(pd.concat([r.rows.assign(clip=name + "/" + r.rows["clip"].astype(str))
                              for name, r in results.items()], ignore_index=True))


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """``(k, r)``: the lag ``k`` in ``-max_lag .. max_lag`` at which ``a[t]`` correlates best (largest Pearson r)
    with ``b[t + k]``, over the frames where ``a`` is finite (``a``, ``b``: ``[T]``); ValueError where no lag has 3
    such frames with both series changing."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    best, best_r = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, -lag): len(a) - max(0, lag)]
        y = b[max(0, lag): len(b) - max(0, -lag)]
        ok = np.isfinite(x)
        if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
            continue
        r = float(np.corrcoef(x[ok], y[ok])[0, 1])
        if r > best_r:
            best, best_r = lag, r
    if not np.isfinite(best_r):
        raise ValueError("no lag with 3 frames where both series change")
    return best, best_r


def loudness_lag(clip: Clip, track: FaceTrack, max_lag: int = MODEL_FREE_MAX_LAG) -> tuple[int, float]:
    """A model-free estimate of a clip's audio-video offset: ``(offset, r)``, the lag (frames, SyncNet's sign:
    positive when the audio leads, ``-k`` for audio delayed by ``k``) at which the dlib inner-lip aperture
    (``lipsync.mouth_features``) correlates best (Pearson r) with the audio's loudness (``data.motion.speech_energy``),
    searched over ``+-max_lag``. Noisy (r is often 0.2-0.5 on real speech): a cross-check of the stand-in, not a
    metric. Frames without a face are left out."""
    from ..data.motion import speech_energy
    from .lipsync import mouth_features

    if clip.audio is None:
        raise ValueError(f"{clip.name or 'clip'} has no audio track: nothing to align the lips with")
    aperture = mouth_features(track.landmarks)[:, 0]
    loud = speech_energy(clip.audio, len(aperture), clip.sample_rate, clip.fps).astype(np.float64)
    try:
        best, best_r = best_lag(aperture, loud, max_lag)
    except ValueError:
        raise ValueError(f"{clip.name or 'clip'}: nothing to align: too few frames with a face, or a mouth or an audio "
                         "that does not change") from None
    return -best, best_r  # the mouth leading the sound by k frames = the audio delayed by k


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


def _print_agreement(res: ValidationResult) -> None:
    agree, n = res.model_free_agreement
    print(f"  in-sync copies: the stand-in's offset is within +-1 frame of the model-free estimate (loudness_lag) in "
          f"{agree} of {n} clips")


def main(argv=None) -> int:
    from ..paths import shared_data_dir
    from .lipsync import default_lip_sync_scorer
    from .lipsync_train import corpus_split, standin_corpus_dirs

    ap = argparse.ArgumentParser(prog="python -m sadtalker_lib.metrics.lipsync_validate", description=__doc__)
    ap.add_argument("--corpus", nargs="+", default=None,
                    help="corpus folders (default: the stand-in's cached default corpora, CPU_CORPORA)")
    ap.add_argument("--videos", default=None, help="real clips folder (default: ../shared/data/clips)")
    ap.add_argument("--heldout-fraction", type=float, default=0.25)
    args = ap.parse_args(argv)
    scorer = default_lip_sync_scorer()
    print(f"lip-sync scorer: {scorer.label}")
    results = {}
    for corpus in args.corpus or standin_corpus_dirs():
        split = corpus_split(corpus, args.heldout_fraction)
        print(f"default corpus {corpus}: {split.describe()}")
        res = results[Path(corpus).name] = validate(scorer, corpus_heldout(corpus, split.heldout), log=print)
        print(res.describe(f"{Path(corpus).name} held-out"))
        _print_agreement(res)
    if len(results) > 1:
        print(pooled(results).describe(f"the {len(results)} corpora's held-out clips together"))
    videos = args.videos or shared_data_dir("clips")
    if videos is not None:
        res = validate(scorer, real_heldout(videos), log=print)
        print(res.describe(f"real clips held-out ({videos})"))
        _print_agreement(res)
    else:
        print("real clips: ../shared/data/clips not found, skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
