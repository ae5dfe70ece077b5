"""What the notebooks share, once: seeding, the optional real data, cached corpora, stand-in networks, plots.

The notebooks import these instead of re-writing them:

    seed_everything(seed)                       python ``random``, numpy and torch (``train.loop``)
    shared_data_dir("clips")                    ``<shared>/data/clips`` or None (``paths.py``)
    shared_clips() / shared_portraits()         the real example videos / photos beside the project, if any
    cached_default_corpus(folder, n_clips, ...) a default corpus, built once per folder and reused
    clip_dicts(corpus, ids)                     clips as dicts of mel / coeffs / audio / style_id
    networks_folder(checkpoints, work, seed)    official-format weights, or seeded tiny stand-ins
    mouth_opening(landmarks)                    inner-lip gap / eye-corner distance (``morphable.render``)
    plot_loss_curve(history, key, ax)           a training curve from anything with ``.series(key, split)``
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .data.corpus import build_default_corpus, is_corpus, load_clip, load_index, select_clips
from .data.portraits import IMAGE_SUFFIXES
from .morphable.render import mouth_opening
from .paths import shared_data_dir

__all__ = [
    "seed_everything", "shared_data_dir", "shared_clips", "shared_portraits", "cached_default_corpus",
    "clip_dicts", "networks_folder", "mouth_opening", "running_mean", "plot_loss_curve",
]


class History(Protocol):
    """What :func:`plot_loss_curve` reads (``train.loop.TrainHistory``): steps and values of one column."""

    def series(self, key: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]: ...


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch: the training loop's ``seed_everything``."""
    from .train.loop import seed_everything as seed_all  # the one definition; imported here on use

    seed_all(seed)


# ---------------------------------------------------------------------------------------------
# The optional real data beside the project
# ---------------------------------------------------------------------------------------------
def shared_clips() -> list[Path]:
    """The example videos in ``<shared>/data/clips`` (SadTalker's 25-fps examples first), or []."""
    folder = shared_data_dir("clips")
    if folder is None:
        return []
    return sorted(folder.glob("*.mp4"), key=lambda p: (not p.name.lower().startswith("sadtalker"), p.name))


def shared_portraits(limit: int | None = None, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The photos in ``<shared>/data/portraits`` (sorted by name, at most ``limit``), or []."""
    folder = shared_data_dir("portraits")
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)[:limit]


# ---------------------------------------------------------------------------------------------
# Cached corpora and weights
# ---------------------------------------------------------------------------------------------
def cached_default_corpus(folder: str | os.PathLike | None, n_clips: int, seed: int = 0, **build_kwargs) -> Path:
    """A default corpus in ``folder`` (None: ``<tmp>/sadtalker-lab-corpus-n<n_clips>-s<seed>``, shared by the
    training notebooks), built with ``build_default_corpus(n_clips=..., seed=..., **build_kwargs)`` when the
    folder holds none yet. Returns the folder."""
    if folder is None:
        import tempfile

        folder = Path(tempfile.gettempdir()) / f"sadtalker-lab-corpus-n{n_clips}-s{seed}"
    folder = Path(folder)
    if is_corpus(folder) and _stale_default_corpus(folder, n_clips, seed, build_kwargs):
        import shutil

        print(f"{folder} holds a default corpus from another builder version or other settings: rebuilding it")
        shutil.rmtree(folder)
    if not is_corpus(folder):
        build_kwargs.setdefault("progress", False)
        build_default_corpus(folder, n_clips=n_clips, seed=seed, **build_kwargs)
    return folder


def _stale_default_corpus(folder: Path, n_clips: int, seed: int, build_kwargs: dict) -> bool:
    """A cached default corpus built by another builder version or with other n_clips / seed / size /
    phenomena (a stored phenomena dict without a newer field has that field's default)."""
    from .data.corpus import Phenomena
    from .data.corpus.default import DEFAULT_CORPUS_VERSION

    index = load_index(folder)
    if index.get("kind") != "default":
        return False  # not ours to replace
    return (index.get("builder_version") != DEFAULT_CORPUS_VERSION or len(index["clips"]) != n_clips
            or index.get("seed") != seed or index.get("size") != build_kwargs.get("size", index.get("size"))
            or Phenomena.coerce(index.get("phenomena")) != Phenomena.coerce(build_kwargs.get("phenomena")))


def clip_dicts(corpus: str | os.PathLike, clips: Sequence[int | str]) -> list[dict]:
    """Whole clips (positions or ids) as dicts of ``mel`` [T, 1, 80, 16], ``coeffs`` [T, 70], ``audio``
    [T * 640] and ``style_id`` (what ``evaluate_posevae_clips`` and the ablations take)."""
    out = []
    for entry in select_clips(load_index(corpus)["clips"], clips):
        c = load_clip(corpus, entry)
        out.append(dict(mel=c["mel"], coeffs=c["coeffs"], audio=c["audio"], style_id=entry["style_id"]))
    return out


def networks_folder(checkpoints: str | os.PathLike | None, work: str | os.PathLike, seed: int = 0
                    ) -> tuple[Path, bool]:
    """(folder, is_stand_in): ``checkpoints`` or ``../runs/latest/models`` when either holds the official
    renderer file, else untrained seeded tiny stand-ins written once to ``work/seeded-tiny-standins``."""
    from .official.registry import save_networks, seeded_networks, tiny_configs

    candidates = ([Path(checkpoints)] if checkpoints else []) + [Path("../runs/latest/models")]
    folder = next((c for c in candidates if (c / "SadTalker_V0.0.2_256.safetensors").is_file()), None)
    if folder is not None:
        return folder, False
    folder = Path(work) / "seeded-tiny-standins"
    save_networks(folder, seeded_networks(seed=seed), tiny_configs(), note="untrained seeded stand-ins")
    return folder, True


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------
def running_mean(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of each k consecutive values: [N] -> [N - k + 1] (empty when N < k)."""
    values = np.asarray(values, float)
    return np.convolve(values, np.ones(k) / k, "valid") if len(values) >= k else np.zeros(0)


def plot_loss_curve(history: History, key: str = "loss", ax=None, *, splits: Sequence[str] = ("train", "heldout"),
                    smooth: int = 10, raw: bool = True, label: str | None = None, title: str | None = None,
                    yscale: str | None = None):
    """One column of a training history on ``ax`` (default: the current axes); returns the axes.

    train: every step (grey when ``smooth`` > 1, left out when not ``raw``) and its ``smooth``-step running mean;
    heldout: one point per evaluation. Labels are ``label`` (default ``key``) plus the split.
    """
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    name = key if label is None else label
    for split in splits:
        s, v = history.series(key, split)
        tag = name if len(splits) == 1 else f"{name}: {split}"
        if split != "train":
            ax.plot(s, v, "o-", label=tag)
        elif smooth > 1:
            if raw:
                ax.plot(s, v, color="0.8", lw=0.8, label=f"{tag} (per step)")
            ax.plot(s[smooth - 1:], running_mean(v, smooth), label=f"{tag} ({smooth}-step mean)")
        else:
            ax.plot(s, v, "-", alpha=0.6, label=tag)
    ax.set_xlabel("step")
    if title is not None:
        ax.set_title(title)
    if yscale is not None:
        ax.set_yscale(yscale)
    return ax
