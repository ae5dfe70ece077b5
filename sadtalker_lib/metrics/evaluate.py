"""Table-1 metrics of one video with its own audio track (``sadtalker-lab evaluate VIDEO``).

The columns come from ``tables.evaluate`` (the one implementation of the Table-1 metrics); lip sync uses
``lipsync.default_lip_sync_scorer`` (the official ``syncnet_v2.model`` when present, else the offline
``LSE [landmark stand-in]``, trained once and cached), and the result also carries the estimated audio-video
offset. FID needs a set of real videos and is left out for a single video.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .lipsync import default_lip_sync_scorer, lip_sync_summary
from .lipsync_train import load_real_clip
from .tables import METRICS
from .tables import evaluate as table1

__all__ = ["evaluate_video", "VIDEO_METRICS"]

VIDEO_METRICS = tuple(m for m in METRICS if m != "FID")  # FID compares sets of frames with real videos


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def evaluate_video(video, *, reference=None, json_out=None, max_seconds: float | None = None, scorer=None,
                   log=print) -> dict:
    """Score ``video`` (a path; a silent video takes the ``.wav`` of the same name) and return (and write to
    ``json_out``)::

        {"video": ..., "metrics": {column label: value or None}, "notes": {column label: [reasons]},
         "lip_sync": {"offset_frames": k, "lse_c": c, "lse_d": d, "definition": "...", "lse_c_at_0": c0,
                      "lse_c_best_offset": cb, "lse_d_best_offset": db, "source": "..."}}

    With the offline stand-in (``source`` ``"LSE [landmark stand-in, at offset 0]"``) ``lse_c`` / ``lse_d`` score the
    clip as played (at offset 0: a clip whose audio is out of sync scores low, which SyncNet's best-offset LSE-C does
    not see) and SyncNet's best-offset values stand beside them as ``lse_c_best_offset`` / ``lse_d_best_offset``;
    with the official ``syncnet_v2.model`` ``lse_c`` / ``lse_d`` are the paper's (best-offset) values. ``definition``
    says which (``lipsync.lip_sync_summary``); the Table-1 columns carry the same label.

    ``reference``: the source portrait for CSIM (default: the video's first frame, noted). ``lip_sync`` is None
    (with a note) when it cannot be computed (no audio, no face). ``scorer``: a lip-sync scorer (default
    :func:`~sadtalker_lib.metrics.lipsync.default_lip_sync_scorer`).
    """
    video = Path(video)
    clip = load_real_clip(video, max_seconds)
    scorer = scorer if scorer is not None else default_lip_sync_scorer(log=log)
    source = scorer.label if scorer.label == "syncnet_v2" else f"LSE [{scorer.label}]"
    df = table1({"video": [clip]}, sources=[reference] if reference is not None else None, metrics=VIDEO_METRICS,
                syncnet=scorer, real_row=None, progress=False)
    row = df.iloc[0]
    metrics = {label: _num(row[(group, label)]) for group, label in df.columns}
    notes = {col: msgs for (_, col), msgs in df.attrs.get("notes", {}).items()}
    lip = None
    try:
        lip = lip_sync_summary(scorer.score(clip), source)
    except (ValueError, RuntimeError) as e:  # NoFaceError, NoAudioTrackError are ValueError / VideoError
        notes.setdefault("lip_sync", []).append(str(e))
    out = {"video": str(video), "metrics": metrics, "notes": notes, "lip_sync": lip}
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(out, indent=2) + "\n")
    return out
