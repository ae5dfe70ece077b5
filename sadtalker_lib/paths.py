"""Where things live outside the repository, once: the cache folder, ``../shared`` and the parity reference.

* cache: ``$SADTALKER_LAB_CACHE`` or ``~/.cache/sadtalker-lab`` (trained-here weights, reference checkpoints).
* shared: ``$SADTALKER_LAB_SHARED``, else a folder named ``shared`` beside the project (or beside any parent of
  the current directory, so notebooks find it too). It is optional: every caller falls back when it is absent.
* reference checkpoints: official-format files with seeded weights, written once by
  ``<shared>/reference/make_checkpoints.py --seed 0`` into the cache (about 2.3 GB) and reused while complete.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["PROJECT_ROOT", "cache_dir", "shared_dir", "shared_data_dir", "reference_dir", "reference_checkpoints",
           "ReferenceMissingError", "partial_path"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SEED = 0


class ReferenceMissingError(FileNotFoundError):
    """The parity reference (``<shared>/reference``) is not beside the project."""


def partial_path(path: str | os.PathLike, pid: int | None = None) -> Path:
    """The hidden sibling a file is written to before ``os.replace`` moves it onto ``path``: one per process
    (``pid``, default this one), so two processes writing the same file (two notebooks, two ranks, a cache filled
    twice) never write into or rename each other's half-written file."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else int(pid)}.tmp")


def cache_dir() -> Path:
    """``$SADTALKER_LAB_CACHE`` or ``~/.cache/sadtalker-lab`` (not created here)."""
    return Path(os.environ.get("SADTALKER_LAB_CACHE", Path.home() / ".cache" / "sadtalker-lab"))


def shared_dir() -> Path | None:
    """The ``shared`` folder (``$SADTALKER_LAB_SHARED``, or beside the project / the current folder), or None."""
    env = os.environ.get("SADTALKER_LAB_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for base in (PROJECT_ROOT, Path.cwd(), *Path.cwd().parents):
        cand = base.parent / "shared" if base == PROJECT_ROOT else base / "shared"
        if cand.is_dir():
            return cand
    return None


def shared_data_dir(*parts: str) -> Path | None:
    """``<shared>/data/<parts...>`` when it exists (e.g. ``shared_data_dir("clips")``), else None."""
    root = shared_dir()
    if root is None:
        return None
    p = root.joinpath("data", *parts)
    return p if p.exists() else None


def reference_dir() -> Path | None:
    """``<shared>/reference`` (parity fixtures and ``make_checkpoints.py``) when present, else None."""
    root = shared_dir()
    p = None if root is None else root / "reference"
    return p if p is not None and (p / "make_checkpoints.py").is_file() else None


def _complete(folder: Path, reference: Path) -> bool:
    layout = json.loads((reference / "checkpoints.json").read_text())
    return (folder / ".complete").is_file() and all((folder / f).is_file() for f in layout["files"])


def reference_checkpoints(out_dir: str | os.PathLike | None = None) -> Path:
    """The folder of seeded official-format checkpoints (seed 0), written once by the reference script.

    Raises :class:`ReferenceMissingError` (saying what to do) when ``<shared>/reference`` is absent.
    """
    reference = reference_dir()
    if reference is None:
        raise ReferenceMissingError(
            "the parity reference was not found: clone the project beside ../shared (or set SADTALKER_LAB_SHARED), "
            "or pass a folder of official checkpoints")
    folder = Path(out_dir) if out_dir is not None else cache_dir() / f"reference-checkpoints-seed{REFERENCE_SEED}"
    if not _complete(folder, reference):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(reference / "make_checkpoints.py"), str(folder), "--seed",
                        str(REFERENCE_SEED)], check=True)
        (folder / ".complete").write_text(f"make_checkpoints.py --seed {REFERENCE_SEED}\n")
    return folder
