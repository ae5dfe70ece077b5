"""The paper's Table 1 as a DataFrame: ``evaluate(...)`` scores videos, ``paper_table`` holds the published rows.

Layout (SadTalker Table 1): rows are methods; columns are grouped as

    Lip Synchronization: LSE-C (up), LSE-D (down) | Learned Head Motion: Diversity (up), Beat Align (up)
    | Video Quality: FID (down), CPBD (up), CSIM (up)

A column computed with an offline stand-in carries it in its label (``LSE-C [trained-here]``,
``CSIM [dlib]``, ``Diversity [solvePnP]``); a cell that cannot be computed (missing weights, no audio track,
no face, no real videos for FID, ...) is NaN and the reason is kept in ``df.attrs["notes"]``
(``table_notes(df)`` lists them; ``display_table(df)`` prints ``n/a``). Per-video values are in
``df.attrs["per_video"]``.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .beat_align import beat_align
from .cpbd import cpbd_frames
from .csim import ArcFaceEmbedder, DlibFaceEmbedder, csim, default_embedder
from .diversity import diversity_of
from .faces import NoFaceError, track_faces
from .head_pose import HopenetHeadPose, PnPHeadPose, head_motion
from .lse import SyncNetScorer, lse
from .video_io import EVAL_FPS, EVAL_SIZE, Clip, NoAudioTrackError, VideoError, as_clip, check_same_timing
from .weights import WeightsMissingError

__all__ = ["GROUPS", "METRICS", "DIRECTION", "evaluate", "paper_table", "paper_table1", "side_by_side",
           "table_notes", "display_table", "plot_metrics", "base_metric"]

GROUPS = {
    "Lip Synchronization": ("LSE-C", "LSE-D"),
    "Learned Head Motion": ("Diversity", "Beat Align"),
    "Video Quality": ("FID", "CPBD", "CSIM"),
}
METRICS = tuple(m for ms in GROUPS.values() for m in ms)
GROUP_OF = {m: g for g, ms in GROUPS.items() for m in ms}
DIRECTION = {"LSE-C": "up", "LSE-D": "down", "Diversity": "up", "Beat Align": "up", "FID": "down", "CPBD": "up",
             "CSIM": "up"}

# ---------------------------------------------------------------------------------------------
# published numbers
# ---------------------------------------------------------------------------------------------
# SadTalker (CVPR 2023) Table 1 (HDTF, same identity), Table A6 (HDTF, cross identity), Table A7 (VoxCeleb2,
# cross identity). Columns: LSE-C, LSE-D, Diversity, Beat Align, FID, CPBD, CSIM; None = "N./A." in the paper.
_PAPER = {
    "1": {
        "Real Video": (8.211, 6.982, 0.259, 0.271, 0.000, 0.428, 1.000),
        "Wav2Lip*": (10.221, 5.535, None, None, 21.725, 0.368, 0.849),
        "PC-AVS**": (9.053, 6.355, None, None, 69.127, 0.206, 0.683),
        "MakeItTalk": (5.110, 10.059, 0.257, 0.268, 28.243, 0.283, 0.838),
        "Audio2Head": (7.357, 7.535, 0.181, 0.267, 24.392, 0.281, 0.823),
        "Wang et al.": (4.932, 10.055, 0.226, 0.268, 22.432, 0.295, 0.811),
        "SadTalker (paper)": (7.290, 7.772, 0.278, 0.293, 22.057, 0.335, 0.843),
    },
    "A6": {
        "Real Video": (8.211, 6.982, 0.259, 0.271, 0.0, 0.428, 1.000),
        "Wav2Lip*": (9.641, 6.035, None, None, 21.727, 0.368, 0.846),
        "PC-AVS**": (8.959, 6.435, None, None, 99.098, 0.201, 0.648),
        "MakeItTalk": (4.937, 10.231, 0.2553, 0.276, 26.829, 0.333, 0.834),
        "Audio2Head": (7.237, 7.648, 0.1783, 0.260, 24.404, 0.282, 0.818),
        "Wang et al.": (4.634, 10.457, 0.2260, 0.265, 22.302, 0.294, 0.805),
        "SadTalker (paper)": (7.343, 7.709, 0.2759, 0.284, 20.886, 0.334, 0.846),
    },
    "A7": {
        "Real Video": (6.209, 7.911, 0.4879, 0.266, 0.0, 0.099, 1.000),
        "Wav2Lip*": (7.640, 7.099, None, None, 19.293, 0.107, 0.936),
        "PC-AVS**": (7.168, 7.443, None, None, 111.043, 0.074, 0.494),
        "MakeItTalk": (3.756, 10.222, 0.5230, 0.275, 23.501, 0.063, 0.883),
        "Audio2Head": (5.266, 8.788, 0.2064, 0.273, 54.694, 0.098, 0.602),
        "Wang et al.": (3.441, 10.519, 0.2547, 0.272, 42.092, 0.136, 0.750),
        "SadTalker (paper)": (5.571, 8.503, 0.5211, 0.277, 22.738, 0.081, 0.893),
    },
}
# Table 1's "Eye Blink" column (not a metric)
_EYE_BLINK = {"Real Video": "N./A.", "Wav2Lip*": "N./A.", "PC-AVS**": "from ref.", "MakeItTalk": "automatic",
              "Audio2Head": "automatic", "Wang et al.": "automatic", "SadTalker (paper)": "controllable"}
_CAPTIONS = {
    "1": "Table 1: HDTF, same identity (first 8 s of 346 videos, 256x256).",
    "A6": "Table A6: HDTF, cross identity.",
    "A7": "Table A7: VoxCeleb2, cross identity (354 videos).",
}


def _columns(labels: Sequence[str]) -> pd.MultiIndex:
    return pd.MultiIndex.from_tuples([(GROUP_OF[base_metric(lb)], lb) for lb in labels], names=["group", "metric"])


def base_metric(label: str) -> str:
    """``"LSE-C [trained-here]"`` -> ``"LSE-C"``."""
    return re.sub(r"\s*\[.*\]\s*$", "", label)


def paper_table(table: str = "1", *, eye_blink: bool = False) -> pd.DataFrame:
    """Published rows of Table 1 / A6 / A7 as a DataFrame (NaN where the paper writes N./A.)."""
    if table not in _PAPER:
        raise ValueError(f"table must be one of {sorted(_PAPER)}, got {table!r}")
    rows = _PAPER[table]
    df = pd.DataFrame([[np.nan if v is None else v for v in vals] for vals in rows.values()],
                      index=pd.Index(list(rows), name="method"), columns=_columns(METRICS))
    if eye_blink and table == "1":
        df.insert(0, ("", "Eye Blink"), [_EYE_BLINK[m] for m in rows])
    notes = defaultdict(list)
    for method, vals in rows.items():
        for metric, v in zip(METRICS, vals):
            if v is None:
                notes[(method, metric)].append("N./A. in the paper (method does not generate head motion)")
    df.attrs["notes"] = dict(notes)
    df.attrs["caption"] = _CAPTIONS[table]
    return df


def paper_table1(**kwargs) -> pd.DataFrame:
    """The paper's Table 1 (see :func:`paper_table`)."""
    return paper_table("1", **kwargs)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
_EXPECTED_ERRORS = (WeightsMissingError, NoFaceError, NoAudioTrackError, VideoError, ValueError)


class _Scorers:
    """The networks, built once per ``evaluate`` call; a missing one becomes a note per cell."""

    def __init__(self, metrics, syncnet, identity, head_pose, fid_weights, device):
        self.errors: dict[str, str] = {}
        self.labels: dict[str, str] = {m: m for m in metrics}
        self.syncnet = self.identity = self.head_pose = self.inception = None
        if {"LSE-C", "LSE-D"} & set(metrics):
            try:
                if isinstance(syncnet, SyncNetScorer):
                    self.syncnet = syncnet
                elif syncnet is None:  # the official file, else the cached offline stand-in (metrics.lipsync)
                    from .lipsync import default_lip_sync_scorer

                    try:
                        self.syncnet = default_lip_sync_scorer(device=device, train_if_missing=False)
                    except FileNotFoundError as e:
                        raise WeightsMissingError(f"{e}; `sadtalker-lab evaluate VIDEO` trains and caches the "
                                                  "stand-in once") from e
                else:
                    self.syncnet = SyncNetScorer.from_file(syncnet, device=device)
                if self.syncnet.label != "syncnet_v2":
                    self.labels.update({m: f"{m} [{self.syncnet.label}]" for m in ("LSE-C", "LSE-D")})
            except (WeightsMissingError, ValueError) as e:
                self.errors["LSE-C"] = self.errors["LSE-D"] = str(e)
        if "CSIM" in metrics:
            try:
                if identity is None:
                    self.identity = default_embedder()
                elif identity == "dlib":
                    self.identity = DlibFaceEmbedder()
                elif identity == "arcface":
                    self.identity = ArcFaceEmbedder()
                elif isinstance(identity, (str, Path)):
                    self.identity = ArcFaceEmbedder(identity)
                else:
                    self.identity = identity
                if self.identity.label != "ArcFace":
                    self.labels["CSIM"] = f"CSIM [{self.identity.label}]"
            except (WeightsMissingError, ValueError) as e:
                self.errors["CSIM"] = str(e)
        if {"Diversity", "Beat Align"} & set(metrics):
            try:
                if head_pose is None or head_pose == "solvePnP":
                    self.head_pose = PnPHeadPose()
                elif head_pose == "hopenet":
                    self.head_pose = HopenetHeadPose()
                elif isinstance(head_pose, (str, Path)):
                    self.head_pose = HopenetHeadPose(head_pose)
                else:
                    self.head_pose = head_pose
                if self.head_pose.label != "Hopenet":
                    self.labels["Diversity"] = f"Diversity [{self.head_pose.label}]"
                    self.labels["Beat Align"] = f"Beat Align [{self.head_pose.label}]"
            except (WeightsMissingError, ValueError) as e:
                self.errors["Diversity"] = self.errors["Beat Align"] = str(e)
        if "FID" in metrics:
            try:
                from .fid import load_inception

                is_model = callable(fid_weights) and not isinstance(fid_weights, (str, Path))
                self.inception = fid_weights if is_model else load_inception(fid_weights, device=device)
            except WeightsMissingError as e:
                self.errors["FID"] = str(e)


def _clip_list(items) -> list:
    if isinstance(items, (str, Path, Clip)):
        return [items]
    return list(items)


def _score_clip(clip: Clip, source, scorers: _Scorers, metrics, *, cpbd_step: int, csim_step: int, beat_method: str):
    """Per-video values {metric: float} and notes {metric: [str]} (FID is done per method)."""
    values, notes = {}, defaultdict(list)
    for metric, err in scorers.errors.items():
        if metric in metrics and metric != "FID":  # FID is scored per method, noted there
            notes[metric].append(err)
    track = None
    if {"LSE-C", "LSE-D", "CSIM", "Diversity", "Beat Align"} & set(metrics):
        track = track_faces(clip.frames, name=clip.name)

    def attempt(names, fn):
        names = [n for n in names if n in metrics and n not in scorers.errors]
        if not names:
            return None
        try:
            return fn()
        except _EXPECTED_ERRORS as e:
            for n in names:
                notes[n].append(f"{clip.name}: {e}")
            return None

    r = attempt(["LSE-C", "LSE-D"], lambda: lse(clip, scorers.syncnet, track=track))
    if r is not None:
        values["LSE-C"], values["LSE-D"] = r.confidence, r.distance
        notes["LSE-C"].extend(r.notes)
        notes["LSE-D"].extend(r.notes)
    motion = attempt(["Diversity", "Beat Align"], lambda: head_motion(clip.frames, scorers.head_pose, track=track,
                                                                       name=clip.name))
    if motion is not None:
        v = attempt(["Diversity"], lambda: diversity_of(motion))
        if v is not None:
            values["Diversity"] = v
        ba = attempt(["Beat Align"], lambda: beat_align(clip.require_audio(), clip.sample_rate, motion.features,
                                                         clip.fps, method=beat_method))
        if ba is not None:
            values["Beat Align"] = ba.score
            notes["Beat Align"].extend(ba.notes)
            notes["Beat Align"].append(f"chance level of these motion beats ({ba.beats_per_s(clip.fps):.2f}/s) at "
                                       f"every offset against the audio: {ba.chance:.3f}")
    c = attempt(["CPBD"], lambda: float(np.mean(cpbd_frames(clip.frames, step=cpbd_step))))
    if c is not None:
        values["CPBD"] = c
    s = attempt(["CSIM"], lambda: csim(source, clip.frames, scorers.identity, track=track, name=clip.name,
                                                step=csim_step))
    if s is not None:
        values["CSIM"] = s.value
        notes["CSIM"].extend(s.notes)
    return values, notes


def evaluate(
    methods: Mapping[str, Sequence],
    *,
    real: Sequence | None = None,
    sources: Mapping[str, Sequence] | Sequence | None = None,
    metrics: Sequence[str] = METRICS,
    real_row: str | None = "Real Video",
    syncnet=None,
    identity=None,
    head_pose=None,
    fid_weights=None,
    fps: float = EVAL_FPS,
    size: int | None = EVAL_SIZE,
    max_frames: int | None = None,
    fid_step: int = 1,
    cpbd_step: int = 1,
    csim_step: int = 1,
    beat_method: str = "onset_peaks",
    pair_tolerance_frames: int = 2,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Score generated videos the way the paper does and return a Table-1-shaped DataFrame.

    * ``methods``: ``{row name: [video path or metrics.Clip, ...]}``, the generated videos of each method.
    * ``real``: the real (ground-truth) videos: FID reference set, the ``real_row`` row (None: no such row),
      and, when paired with a method's videos (same count), the default CSIM source = their first frame
      (paper: "we use the first frame of each video as the reference image"). Paired videos whose lengths
      differ by more than ``pair_tolerance_frames`` raise ``ValueError``.
    * ``sources``: CSIM source images (path or ``uint8 [H, W, 3]``), one per video: a list shared by all
      methods or ``{method: [...]}``. Without sources or paired real videos, the first generated frame is
      the source (noted).
    * ``syncnet``: path to ``syncnet_v2.model`` / a trained-here file / a ``SyncNetScorer`` (None: the official
      file at its default location, else the cached offline ``[landmark stand-in]`` of ``metrics.lipsync``).
      ``identity``: None (ArcFace if present else dlib), ``"dlib"``, ``"arcface"``, a weights path or an
      embedder. ``head_pose``: None / ``"solvePnP"``, ``"hopenet"``, a Hopenet weights path or an estimator.
      ``fid_weights``: path of pt_inception (None: torch hub cache)
      or an already loaded feature model (``metrics.fid.load_inception()``, or any model with its interface).
    * Videos are decoded at ``fps`` (25, SyncNet's rate) and ``size`` x ``size`` (256, as in the paper), at
      most ``max_frames`` frames; FID uses every ``fid_step``-th frame, CPBD every ``cpbd_step``-th, CSIM every
      ``csim_step``-th (1 = every frame, as the paper; larger steps trade exactness for speed on a CPU).

    Rows: ``real_row`` (if ``real``) then the methods; values are means over each method's videos.
    ``df.attrs``: ``notes`` {(row, column label): [reasons]}, ``per_video`` (long DataFrame), ``labels``.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    metrics = [m for m in METRICS if m in set(metrics)]
    if not methods and real is None:
        raise ValueError("nothing to score: give methods={name: [generated video, ...]} and/or real=[...]")
    load = dict(fps=fps, size=size, max_frames=max_frames)
    scorers = _Scorers(metrics, syncnet, identity, head_pose, fid_weights, device)
    labels = scorers.labels

    rows: dict[str, list[Clip]] = {}
    real_clips = [as_clip(r, **load) for r in _clip_list(real)] if real is not None else []
    if real_clips and real_row:
        rows[real_row] = real_clips
    for name, items in methods.items():
        if name in rows:
            raise ValueError(f"method name {name!r} clashes with the real-video row; rename it")
        rows[name] = [as_clip(v, **load) for v in _clip_list(items)]
        if not rows[name]:
            raise ValueError(f"method {name!r} has no videos")

    all_notes: dict[tuple[str, str], list[str]] = defaultdict(list)
    per_video = []
    fid_feats: dict[str, np.ndarray] = {}
    for row, clips in rows.items():
        is_real = row == real_row and clips is real_clips
        row_sources = _sources_for(row, clips, sources, real_clips, is_real, pair_tolerance_frames, all_notes, labels)
        for clip, source in tqdm(list(zip(clips, row_sources)), desc=row, disable=not progress):
            for n in clip.notes:
                all_notes[(row, "*")].append(n)
            values, notes = _score_clip(clip, source, scorers, metrics, cpbd_step=cpbd_step, csim_step=csim_step,
                                        beat_method=beat_method)
            for metric, msgs in notes.items():
                for m in msgs:  # de-duplicated: one reason per cell
                    if m not in all_notes[(row, labels[metric])]:
                        all_notes[(row, labels[metric])].append(m)
            per_video.append({"method": row, "video": clip.name, **{labels[m]: values.get(m, np.nan) for m in metrics}})
        if "FID" in metrics and scorers.inception is not None:
            from .fid import inception_features

            frames = [f for c in clips for f in c.frames[::fid_step]]
            fid_feats[row] = inception_features(frames, scorers.inception, size=size, device=device)

    table = pd.DataFrame(per_video)
    result = table.groupby("method", sort=False)[[labels[m] for m in metrics]].mean().reindex(list(rows))
    if "FID" in metrics:
        _fid_column(result, rows, real_clips, real_row, fid_feats, scorers, all_notes, fid_step=fid_step, size=size,
                    device=device)
    for row in rows:  # a cell that is NaN must say why
        for m in metrics:
            lb = labels[m]
            if pd.isna(result.loc[row, lb]) and not all_notes.get((row, lb)):
                all_notes[(row, lb)].append("no video of this row could be scored for this metric")
            n_na = int(table.loc[table["method"] == row, lb].isna().sum()) if lb in table else 0
            if m != "FID" and 0 < n_na < (table["method"] == row).sum():
                all_notes[(row, lb)].append(f"{n_na} video(s) n/a, mean over the others")
    result.columns = _columns([labels[m] for m in metrics])
    result.index.name = "method"
    result.attrs["notes"] = {k: v for k, v in all_notes.items() if v}
    result.attrs["per_video"] = table
    result.attrs["labels"] = dict(labels)
    return result


def _fid_column(result, rows, real_clips, real_row, fid_feats, scorers, notes, *, fid_step, size, device):
    """Fill the FID column: each row's frames against all real frames (n/a with a note when impossible)."""
    from .fid import fid_from_features, inception_features

    label = scorers.labels["FID"]
    result[label] = np.nan
    ref = None
    if scorers.inception is not None and real_clips:
        ref = fid_feats.get(real_row) if real_row in fid_feats else inception_features(
            [f for c in real_clips for f in c.frames[::fid_step]], scorers.inception, size=size, device=device)
    for row in rows:
        if scorers.inception is None:
            notes[(row, label)].append(scorers.errors["FID"])
        elif ref is None:
            notes[(row, label)].append("FID needs real videos (real=...) as the reference set")
        else:
            try:
                result.loc[row, label] = fid_from_features(fid_feats[row], ref)
            except ValueError as e:
                notes[(row, label)].append(str(e))


def _sources_for(row, clips, sources, real_clips, is_real, tolerance, notes, labels):
    """CSIM source image for each clip of a row (see ``evaluate``)."""
    from ..face.detect import load_image

    if sources is not None and not is_real:
        row_sources = sources.get(row) if isinstance(sources, Mapping) else sources
        if row_sources is not None:
            row_sources = list(row_sources)
            if len(row_sources) != len(clips):
                raise ValueError(f"{row}: {len(clips)} videos but {len(row_sources)} CSIM source images")
            return [load_image(s) if isinstance(s, (str, Path)) else np.asarray(s) for s in row_sources]
    if is_real:
        return [c.frames[0] for c in clips]
    if real_clips and len(real_clips) == len(clips):
        for gen, ref in zip(clips, real_clips):
            try:
                check_same_timing(gen, ref, tolerance_frames=tolerance)
            except ValueError as e:
                raise ValueError(f"{row}: generated video vs its real video: {e} (trim them or pass max_frames)") from e
        return [c.frames[0] for c in real_clips]
    if "CSIM" in labels:
        notes[(row, labels["CSIM"])].append("no source images given: CSIM against each video's own first frame")
    return [c.frames[0] for c in clips]


# ---------------------------------------------------------------------------------------------
# presenting
# ---------------------------------------------------------------------------------------------
def table_notes(df: pd.DataFrame) -> pd.DataFrame:
    """The notes of a table (why cells are n/a, which stand-ins were used) as rows (method, column, note)."""
    rows = [(m, c, n) for (m, c), ns in df.attrs.get("notes", {}).items() for n in ns]
    return pd.DataFrame(rows, columns=["method", "column", "note"])


def display_table(df: pd.DataFrame, digits: int = 3, arrows: bool = True) -> pd.DataFrame:
    """Strings for display: numbers rounded, NaN as ``n/a``, metric names with the paper's up/down arrows."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [("n/a" if pd.isna(v) else f"{v:.{digits}f}") for v in out[col]]
    if arrows:
        out.columns = pd.MultiIndex.from_tuples(
            [(g, f"{m} {'↑' if DIRECTION.get(base_metric(m)) == 'up' else '↓'}" if base_metric(m) in DIRECTION else m)
             for g, m in out.columns], names=out.columns.names)
    return out


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame | None = None, *, ours_name: str = "this run") -> pd.DataFrame:
    """Our rows under the paper's, columns matched by metric name; the stand-ins used are in the source name."""
    paper = paper_table1() if paper is None else paper
    labels = [m for _, m in ours.columns]
    variants = [m for m in labels if m != base_metric(m)]
    name = ours_name + (f" ({', '.join(variants)})" if variants else "")
    ours_base = ours.copy()
    ours_base.columns = _columns([base_metric(m) for m in labels])
    paper_num = paper[[c for c in paper.columns if c[1] in METRICS]]
    combined = pd.concat({f"paper ({paper.attrs.get('caption', 'Table 1')})": paper_num, name: ours_base},
                         names=["source", "method"])
    return combined.reindex(columns=_columns([m for m in METRICS if m in set(paper_num.columns.get_level_values(1))
                                              | set(ours_base.columns.get_level_values(1))]))


def plot_metrics(df: pd.DataFrame, reference: pd.DataFrame | None = None, *, ncols: int = 4):
    """One bar chart per metric (rows of ``df``); ``reference`` rows (e.g. :func:`paper_table1`) drawn hatched."""
    import matplotlib.pyplot as plt

    cols = list(df.columns)
    nrows = int(np.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (group, label) in zip(axes.ravel(), cols):
        base = base_metric(label)
        names, vals, hatch = list(df.index), list(df[(group, label)].astype(float)), [""] * len(df)
        if reference is not None and base in set(reference.columns.get_level_values(1)):
            ref = reference.xs(base, axis=1, level=1).iloc[:, 0]
            names += [f"{n} (paper)" for n in ref.index]
            vals += list(ref.astype(float))
            hatch += ["//"] * len(ref)
        y = np.arange(len(names))
        finite = np.nan_to_num(np.asarray(vals, float), nan=0.0)
        bars = ax.barh(y, finite, color=["C0" if not h else "0.75" for h in hatch])
        for b, h, v in zip(bars, hatch, vals):
            b.set_hatch(h)
            if not np.isfinite(v):
                ax.text(0, b.get_y() + b.get_height() / 2, " n/a", va="center", fontsize=8, color="C3")
        ax.set_yticks(y, names, fontsize=7)
        ax.invert_yaxis()
        arrow = "↑" if DIRECTION.get(base) == "up" else "↓"
        ax.set_title(f"{label} {arrow}", fontsize=9)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    fig.tight_layout()
    return fig

