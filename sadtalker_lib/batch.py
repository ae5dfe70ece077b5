"""Batch generation: a CSV of jobs -> one talking-head mp4 per row (``sadtalker-lab generate-batch``).

The rows are shared out over the processes of a ``torchrun`` / ``accelerate launch`` run through Accelerate's
``PartialState`` (one process when started plainly); each process loads the networks once and calls
:meth:`TalkingHeadPipeline.generate` for its rows. Nothing here is distributed machinery of its own.

jobs.csv (a header row, then one row per job; relative paths are relative to the CSV's folder):

    image (or portrait)  the portrait                                              required
    audio                the speech                                                required
    id                   the output's name, letters / digits / ``._-``             default: row0001, row0002 ...
    preprocess, still, pose_style, expression_scale, ref_eyeblink, ref_pose, input_yaw, input_pitch, input_roll,
    batch_size, enhancer, seed, seamless                                           optional ``generate`` options
                         (``GenerationOptions`` fields; empty = the default; lists space-separated: ``0 20 -10``;
                         booleans 1/0, true/false, yes/no)

The out folder:

    <id>.mp4                     one per finished row (the pipeline writes it atomically)
    records/part-<k>.jsonl       process k appends one JSON line per row it ran (status ok or error, timings,
                                 the error message), flushed and fsynced before the next row; a line cut short by a
                                 killed process is ignored when read. The newest record of a row wins.
    summary.csv                  written by the main process at the end: one line per CSV row, in CSV order
                                 (status ok / error / pending, output, frames, seconds per stage, error)

Resuming: a row whose newest record is ``ok`` and whose mp4 exists is skipped; failed rows are tried again. The
rows still to do are read by every process before any starts (a barrier), then split by position (k, k + n, ...).
A failing row (bad input, bad option, an exception in generation) is recorded and the next row starts.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from .paths import partial_path
from .pipeline import FPS, GenerationOptions

__all__ = ["Job", "BatchSummary", "read_jobs", "job_options", "read_records", "write_summary", "run_batch",
           "OPTION_COLUMNS"]


def _bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "y"):
        return True
    if v in ("0", "false", "no", "n"):
        return False
    raise ValueError(f"not a boolean: '{text}' (use 1/0, true/false, yes/no)")


def _numbers(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


OPTION_COLUMNS = {  # CSV column -> parser; every key is a GenerationOptions field
    "preprocess": str, "still": _bool, "pose_style": int, "expression_scale": float, "ref_eyeblink": str,
    "ref_pose": str, "input_yaw": _numbers, "input_pitch": _numbers, "input_roll": _numbers, "batch_size": int,
    "enhancer": str, "seed": int, "seamless": _bool, "paste_solver": str,
}
PATH_OPTIONS = ("ref_eyeblink", "ref_pose")
assert set(OPTION_COLUMNS) <= {f.name for f in fields(GenerationOptions)}
IMAGE_COLUMNS = ("image", "portrait")
STAGES = ("audio", "preprocess", "audio_to_coeffs", "render", "paste_encode", "total")  # GenerationResult.timings
SUMMARY_COLUMNS = ["row", "id", "image", "audio", "status", "output", "frames", "video_s",
                   *[f"{s}_s" for s in STAGES], "process", "finished_at", "error"]
_ID = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class Job:
    """One CSV row: ``row`` its 1-based position among the data rows, ``options`` the raw option cells."""

    row: int
    id: str
    image: Path
    audio: Path
    options: dict[str, str] = field(default_factory=dict)

    @property
    def output_name(self) -> str:
        return f"{self.id}.mp4"


@dataclass
class BatchSummary:
    """What :func:`run_batch` returns: the ids this process ran (``ran``) and saw fail (``failed``), the ids
    finished before this run (``skipped``, every process), and on the main process the summary CSV (else None)."""

    ran: list[str]
    skipped: list[str]
    failed: list[str]
    summary_csv: Path | None
    rows_failed: int = 0  # main process: rows whose newest record is an error (summary.csv)


def read_jobs(jobs_csv: str | os.PathLike) -> list[Job]:
    """Parse jobs.csv. Errors that concern the whole file (no such file, a missing required column, an unknown
    column, a bad or repeated id) raise ValueError / FileNotFoundError before anything runs; a row's bad option
    value is found only when that row runs (:func:`job_options`), so it fails alone."""
    path = Path(jobs_csv)
    if not path.is_file():
        raise FileNotFoundError(f"jobs file {path} not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    image_col = next((c for c in IMAGE_COLUMNS if c in header), None)
    if image_col is None or "audio" not in header:
        raise ValueError(f"{path}: the header needs an 'image' (or 'portrait') and an 'audio' column; got {header}")
    unknown = set(header) - {*IMAGE_COLUMNS, "audio", "id", *OPTION_COLUMNS}
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {sorted(unknown)}; allowed: image/portrait, audio, id, "
                         + ", ".join(OPTION_COLUMNS))
    base, jobs, seen = path.parent, [], set()
    for i, r in enumerate(rows, start=1):
        job_id = r.get("id") or f"row{i:04d}"
        if not _ID.match(job_id):
            raise ValueError(f"{path} row {i}: id '{job_id}' must be letters, digits, '.', '_' or '-'")
        if job_id in seen:
            raise ValueError(f"{path} row {i}: id '{job_id}' is used twice")
        seen.add(job_id)
        options = {k: r[k] for k in OPTION_COLUMNS if r.get(k)}
        for k in PATH_OPTIONS:
            if k in options:
                options[k] = str(base / options[k])
        jobs.append(Job(row=i, id=job_id, image=base / r[image_col], audio=base / r["audio"], options=options))
    return jobs


def job_options(job: Job) -> GenerationOptions:
    """The row's :class:`GenerationOptions` (ValueError naming the column on a bad value)."""
    kwargs = {}
    for k, text in job.options.items():
        try:
            kwargs[k] = OPTION_COLUMNS[k](text)
        except ValueError as e:
            raise ValueError(f"column '{k}': {e}") from None
    return GenerationOptions(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# records
def _records_dir(out_dir: Path) -> Path:
    return out_dir / "records"


def _append_record(path: Path, record: dict) -> None:
    """One JSON line, written with a single ``write`` on an O_APPEND descriptor and fsynced (after a newline if
    the file ends in a line cut short by a killed process, so the new record stays whole)."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(out_dir: str | os.PathLike) -> dict[str, dict]:
    """The newest record of each job id over every process's part file (torn lines skipped)."""
    newest: dict[str, dict] = {}
    folder = _records_dir(Path(out_dir))
    for part in sorted(folder.glob("part-*.jsonl")) if folder.is_dir() else []:
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or "id" not in rec:
                continue
            old = newest.get(rec["id"])
            if old is None or rec.get("finished_at", "") >= old.get("finished_at", ""):
                newest[rec["id"]] = rec
    return newest


def _is_done(rec: dict | None, out_dir: Path) -> bool:
    return rec is not None and rec.get("status") == "ok" and (out_dir / rec.get("output", "")).is_file()


def write_summary(jobs: list[Job], out_dir: str | os.PathLike) -> Path:
    """Merge the part files into ``summary.csv`` (one line per job, CSV order; written atomically)."""
    out_dir = Path(out_dir)
    records = read_records(out_dir)
    path = out_dir / "summary.csv"
    tmp = partial_path(path)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for job in jobs:
            rec = dict(records.get(job.id) or {"status": "pending"})
            if rec.get("status") == "ok" and not (out_dir / rec.get("output", "")).is_file():
                rec.update(status="error", error="the output file is missing (deleted after it was written)")
            w.writerow({**rec, "row": job.row, "id": job.id, "image": str(job.image), "audio": str(job.audio)})
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
def _run_job(job: Job, out_dir: Path, load_pipeline, process: int) -> dict:
    """Generate one row; never raises an Exception (the record carries it)."""
    rec: dict = {"row": job.row, "id": job.id, "process": process}
    t0 = time.perf_counter()
    try:
        opts = job_options(job)
        for name, p in (("image", job.image), ("audio", job.audio)):
            if not p.is_file():
                raise FileNotFoundError(f"{name} {p} not found")
        result = load_pipeline().generate(job.image, job.audio, out=out_dir / job.output_name, options=opts,
                                          progress=False)
        rec.update(status="ok", output=job.output_name, frames=result.num_frames,
                   video_s=round(result.num_frames / FPS, 3),
                   **{f"{s}_s": round(result.timings.get(s, 0.0), 4) for s in STAGES}, error="")
    except Exception as e:  # noqa: BLE001 - one failing row must not stop the others
        rec.update(status="error", output="", error=f"{type(e).__name__}: {e}",
                   total_s=round(time.perf_counter() - t0, 4))
        traceback.print_exc(file=sys.stderr)
    rec["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return rec


def run_batch(jobs_csv: str | os.PathLike, out_dir: str | os.PathLike, *, checkpoints: str | os.PathLike | None = None,
              size: int = 256, device: str | None = None, old_version: bool = False, precision: str = "exact",
              pipeline=None, progress: bool = True) -> BatchSummary:
    """Run every unfinished row of ``jobs_csv`` into ``out_dir``, this process's share of them.

    ``pipeline``: a ready :class:`TalkingHeadPipeline` (else one is loaded from ``checkpoints`` the first time a
    row of this process needs it, on ``device``: default the process's own device from Accelerate, e.g. cuda:k).
    Every process must call this (it holds two barriers); the main process writes summary.csv at the end.
    """
    from accelerate import PartialState

    jobs = read_jobs(jobs_csv)
    out_dir = Path(out_dir)
    state = PartialState(cpu=device == "cpu")
    rank, world = state.process_index, state.num_processes
    if state.is_main_process:
        _records_dir(out_dir).mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    records = read_records(out_dir)
    skipped = [j.id for j in jobs if _is_done(records.get(j.id), out_dir)]
    done = set(skipped)
    todo = [j for j in jobs if j.id not in done]
    state.wait_for_everyone()  # everyone has read the records before anyone writes a new one
    mine = todo[rank::world]
    loaded = [pipeline]
    run_on = str(state.device) if device in (None, "auto", "cuda") else device  # cuda: this process's own GPU

    def load_pipeline():
        if loaded[0] is None:
            from .pipeline import TalkingHeadPipeline

            if checkpoints is None:
                raise ValueError("run_batch needs checkpoints= (a folder) or pipeline=")
            loaded[0] = TalkingHeadPipeline.from_checkpoints(checkpoints, size=size, device=run_on,
                                                             old_version=old_version, progress=False,
                                                             precision=precision)
        return loaded[0]

    part = _records_dir(out_dir) / f"part-{rank}.jsonl"
    ran, failed = [], []
    for job in mine:
        rec = _run_job(job, out_dir, load_pipeline, rank)
        _append_record(part, rec)
        (ran if rec["status"] == "ok" else failed).append(job.id)
        if progress:
            what = f"ok, {rec['frames']} frames, {rec['total_s']:.1f} s" if rec["status"] == "ok" else rec["error"]
            print(f"[process {rank}/{world}] {job.id}: {what}", flush=True)
    state.wait_for_everyone()
    summary, rows_failed = None, 0
    if state.is_main_process:
        summary = write_summary(jobs, out_dir)
        with open(summary, newline="", encoding="utf-8") as f:
            rows_failed = sum(r["status"] == "error" for r in csv.DictReader(f))
        if progress:
            print(f"wrote {summary}: {len(jobs)} rows, {len(skipped)} finished before, {len(todo)} run now, "
                  f"{rows_failed} failed", flush=True)
    return BatchSummary(ran=ran, skipped=skipped, failed=failed, summary_csv=summary, rows_failed=rows_failed)
