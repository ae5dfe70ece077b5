"""A corpus from a folder of real talking-face videos (VoxCeleb / HDTF style), in the corpus format (``format.py``).

``build_video_corpus`` (CLI: ``sadtalker-lab corpus build --videos DIR --out DIR``):

1. every video of the folder (``video.VIDEO_SUFFIXES``: .mp4, .mpg, ...) becomes one clip
   (``video_clip.process_clip``: official crop, 25 fps, 16 kHz audio, mel windows, dlib landmarks, the
   morphable model fitted with one identity per clip, the lip-only target, head pose, eye ratio and blink);
   clips run in ``workers`` processes, each finished clip is kept under ``out/clips/`` and reused by a later
   build with the same settings (a killed build resumes; a finished clip is not redone);
2. a person per clip (``people.assign_people``: dlib face descriptors clustered at distance 0.6, or
   ``people.csv`` in the video folder) -> ``identity_id``;
3. the identity-disjoint train / held-out split (``splits.identity_split``) stored in the index as ``split``
   (recomputable with the stored ``split_settings``).

Clips that fail (no face, no audio) are reported under ``skipped`` in the index and left out.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable

from ...video import VIDEO_SUFFIXES
from .format import make_index, write_index
from .people import PEOPLE_FILE, SAME_PERSON_DISTANCE, assign_people, read_people_csv
from .video_clip import CLIP_DIR, MOUTH_DIMS, WORKER_PREFIX, ClipSettings, cached_result, process_clip

__all__ = ["MOUTH_DIMS", "VIDEO_SUFFIXES", "find_videos", "build_video_corpus"]


def find_videos(video_dir: str | os.PathLike) -> list[Path]:
    """The video files of a folder (sorted by name); ``FileNotFoundError`` when there are none."""
    video_dir = Path(video_dir)
    videos = sorted(p for p in video_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) \
        if video_dir.is_dir() else []
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {video_dir}")
    return videos


def _worker_command(out_dir: Path, settings: ClipSettings) -> tuple[list[str], dict]:
    import sadtalker_lib

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(sadtalker_lib.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = ("import sys; from sadtalker_lib.data.corpus.video_clip import worker_main; "
            "sys.exit(worker_main(sys.argv[1:3]))")
    cmd = [sys.executable, "-c", code, str(out_dir), json.dumps(dict(settings))]
    return cmd, env


def _serve(proc, jobs: queue.Queue, results: dict, lock: threading.Lock, bar) -> None:
    """Feed one worker process video paths until the queue is empty (one JSON line back per clip)."""
    try:
        while True:
            try:
                p = jobs.get_nowait()
            except queue.Empty:
                break
            proc.stdin.write(f"{p}\n")
            proc.stdin.flush()
            meta = None
            for line in proc.stdout:
                if line.startswith(WORKER_PREFIX):
                    meta = json.loads(line[len(WORKER_PREFIX):])
                    break
            with lock:
                results[p] = meta if meta is not None else {"error": "the worker process died"}
                bar.set_postfix_str(p.name[:30])
                bar.update()
            if meta is None:
                break
    finally:
        proc.stdin.close()
        proc.wait()


def _run_clips(todo: list[Path], out_dir: Path, settings: ClipSettings, workers: int, detector, bar) -> dict:
    """process_clip over ``todo`` -> {path: meta}: in this process, or in ``workers`` worker processes
    (``video_clip.worker_main``, fed one path at a time, so the load stays balanced and
    no ``if __name__ == "__main__"`` guard is needed in the caller's script)."""
    results: dict[Path, dict] = {}
    if workers > 1 and len(todo) > 1 and detector is None:
        import subprocess

        jobs: queue.Queue = queue.Queue()
        for p in todo:
            jobs.put(p)
        cmd, env = _worker_command(out_dir, settings)
        lock = threading.Lock()
        threads = []
        for _ in range(min(workers, len(todo))):
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            threads.append(threading.Thread(target=_serve, args=(proc, jobs, results, lock, bar), daemon=True))
            threads[-1].start()
        for t in threads:
            t.join()
        for p in todo:  # a worker that died leaves its remaining videos to this process
            if p not in results or results[p].get("error") == "the worker process died":
                results[p] = process_clip(p, out_dir, settings)
    else:
        for p in todo:
            results[p] = process_clip(p, out_dir, settings, detector=detector)
            bar.set_postfix_str(p.name[:30])
            bar.update()
    return results


def build_video_corpus(video_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int = 128,
                       max_seconds: float | None = 10.0, max_clips: int | None = None, fit_coeffs: bool = True,
                       fit_iterations: int | None = None, identity_of: Callable[[Path], str] | None = None,
                       detector=None, progress: bool = True, *, workers: int = 2, lip_iterations: int = 100,
                       people_csv: str | os.PathLike | None = None,
                       identity_threshold: float = SAME_PERSON_DISTANCE, heldout_fraction: float = 0.25,
                       split_seed: int = 0) -> Path:
    """Cache a folder of real talking-face videos into the corpus folder ``out_dir``; returns its ``corpus.json``.

    size: stored frame size (px). max_seconds: at most this much of each video (None: all of it).
    max_clips: only the first videos (by name). fit_coeffs: fit the morphable model (False: zeros and
    ``coeffs_fitted: false``); fit_iterations / lip_iterations: Adam steps of ``fit_video`` / ``fit_mouth``.
    workers: processes (1: in this process; a custom ``detector`` always runs here).
    Person per clip: ``identity_of(path)`` when given, else ``people_csv`` (default: ``people.csv`` in the video
    folder when present) and the face-descriptor clustering at ``identity_threshold``. The style id of a clip is
    its identity id, as the official PoseVAE's 46 style classes are its training speakers.
    The split: ``identity_split(index, heldout_fraction, split_seed)``, stored as ``index["split"]``.
    ``FileNotFoundError`` when the folder holds no video; ``ValueError`` when no clip is usable.
    """
    from tqdm.auto import tqdm

    from .splits import identity_split

    video_dir, out_dir = Path(video_dir), Path(out_dir)
    videos = find_videos(video_dir)
    people_path = Path(people_csv) if people_csv is not None else video_dir / PEOPLE_FILE
    if people_csv is not None and not people_path.is_file():
        raise FileNotFoundError(f"people file not found: {people_path}")
    videos = videos[:max_clips] if max_clips is not None else videos
    (out_dir / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    settings = ClipSettings(size=int(size), max_seconds=max_seconds, fit_coeffs=bool(fit_coeffs),
                            fit_iterations=fit_iterations, lip_iterations=int(lip_iterations))
    metas = {p: cached_result(p, out_dir, settings) for p in videos}
    todo = [p for p in videos if metas[p] is None]
    with tqdm(total=len(videos), initial=len(videos) - len(todo), desc="video corpus", unit="clip",
              disable=not progress) as bar:
        metas.update(_run_clips(todo, out_dir, settings, workers, detector, bar))

    ok = [p for p in videos if "error" not in metas[p]]
    skipped = [dict(file=p.name, reason=metas[p]["error"]) for p in videos if "error" in metas[p]]
    for s in skipped:
        warnings.warn(f"skipping {s['file']}: {s['reason']}", stacklevel=2)
    if not ok:
        raise ValueError(f"no usable clip in {video_dir}; skipped: {skipped}")

    if identity_of is not None:
        names, how = [str(identity_of(p)) for p in ok], {"identity_of": len(ok)}
    else:
        people = read_people_csv(people_path) if people_path.is_file() else None
        names, how = assign_people([p.name for p in ok], [metas[p].get("descriptors") for p in ok], people,
                                   identity_threshold)
    identities = list(dict.fromkeys(names))
    entries = []
    for k, (p, name) in enumerate(zip(ok, names)):
        ident = identities.index(name)
        entries.append(dict(id=f"clip_{k:04d}", **metas[p]["entry"], style_id=ident, style=name,
                            identity_id=ident, identity=name))
    fitted = [e["fit_error_px_224"] for e in entries if e.get("fit_error_px_224") is not None]
    index = make_index(
        "video", size,
        source_dir=str(video_dir), expression_space="DefaultMorphableModel" if fit_coeffs else None,
        styles=list(identities), identities=list(identities),
        builder=dict(settings, workers=int(workers), settings_key=settings.key),
        identity_assignment=dict(method="identity_of" if identity_of is not None else
                                 "dlib face descriptors, average linkage",
                                 threshold=float(identity_threshold),
                                 people_csv=str(people_path) if people_path.is_file() else None, clips=how),
        mean_fit_error_px_224=float(sum(fitted) / len(fitted)) if fitted else None,
        clips=entries, skipped=skipped)
    split_settings = dict(heldout_fraction=float(heldout_fraction), seed=int(split_seed))
    index["split_settings"] = split_settings
    index["split"] = identity_split(index, **split_settings).to_json() if len(entries) >= 2 else None
    return write_index(out_dir, index)
