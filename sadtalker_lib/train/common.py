"""What every training loop shares: the paper's hyper-parameters, seeding, logging, checkpoint + resume.

Hyper-parameters (paper Sec. 4.1 "Implementation Details" and supp. B.3), each stated once here:

* Adam for every stage; learning rates ExpNet 2e-5, PoseVAE 1e-4, FaceRender 2e-4 (Sec. 4.1).
* ExpNet learns from windows of 5 consecutive frames, PoseVAE from 32 (Sec. 4.1).
* ExpNet loss weights lambda_distill 2, lambda_read 0.01, lambda_lks 0.01 (Eq. 10), lambda_eye 200 (Eq. 8).
* PoseVAE loss weights lambda_MSE 1, lambda_KL 1, lambda_GAN 0.7 (Eq. 13).

The configs default to these numbers; ``.cpu()`` gives a small preset (fewer steps, a larger learning rate so
that something is learned in a minute on 2 cores) for notebooks and CI, and says so in its docstring.

Reproducibility. A run is a pure function of (config, data, step): the batch of step ``k`` and every random
draw inside it (blink signal, VAE noise) come from generators seeded with ``(seed, k)``
(:func:`step_generator`), so no sampler state has to survive a restart. A checkpoint stores the module
(official layout), the optimizer state, the step, the global RNG states and the log position;
:func:`restore_training_state` puts all of it back, and a run killed after step k and resumed ends with the
same weights as one that never stopped (tests/test_train_*.py check this bit for bit).
"""
from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "LR_EXPNET",
    "LR_POSEVAE",
    "LR_FACERENDER",
    "EXPNET_WINDOW",
    "POSEVAE_WINDOW",
    "TrainConfig",
    "seed_everything",
    "step_generator",
    "step_rng",
    "CSVLogger",
    "TrainHistory",
    "progress",
    "rng_state",
    "set_rng_state",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "save_training_checkpoint",
    "restore_training_state",
    "precise_batchnorm",
]

# --- paper Sec. 4.1 / supp. B.3 ------------------------------------------------------------------
LR_EXPNET = 2e-5  # Sec. 4.1: "ExpNet, PoseVAE, and FaceRender are trained with a learning rate of 2e-5, 1e-4, 2e-4"
LR_POSEVAE = 1e-4
LR_FACERENDER = 2e-4
EXPNET_WINDOW = 5  # Sec. 4.1: "ExpNet uses continuous 5 frames to learn"
POSEVAE_WINDOW = 32  # Sec. 4.1: "PoseVAE is learned via continuous 32 frames" (= PoseVAEConfig.seq_len)


@dataclass
class TrainConfig:
    """Loop settings shared by every stage (the stage configs add their loss weights and switches).

    steps: optimizer steps in all (a resumed run continues up to this number).
    batch_size: windows per step. lr: Adam learning rate; adam_betas: Adam betas.
    eval_every: held-out loss every this many steps (and at step 0 and the last step).
    checkpoint_every: write a resumable checkpoint every this many steps (0: only at the end).
    keep_checkpoints: how many periodic checkpoints to keep (older ones are deleted).
    num_threads: torch CPU threads (None: leave torch's setting). progress: tqdm bar.
    """

    steps: int = 20000
    batch_size: int = 32
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    num_threads: int | None = None
    progress: bool = True

    def replace(self, **changes):
        """A copy with some fields changed (unknown names raise TypeError)."""
        names = {f.name for f in fields(self)}
        bad = sorted(set(changes) - names)
        if bad:
            raise TypeError(f"{type(self).__name__} has no field(s) {bad}; fields: {sorted(names)}")
        return type(self)(**{**asdict_shallow(self), **changes})

    def to_dict(self) -> dict:
        return asdict(self)


def asdict_shallow(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


# --- seeding ---------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A torch generator for the random draws of one training step (``stream`` separates independent uses)."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step, stream]).generate_state(1, np.uint64)[0] >> 1))
    return g


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The numpy generator for one step (batch indices)."""
    return np.random.default_rng([seed, step, stream])


def rng_state() -> dict:
    """The global RNG states (python, numpy, torch) as weights-only-loadable values."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping) -> None:
    """Undo :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


# --- logging ---------------------------------------------------------------------------------------
@dataclass
class TrainHistory:
    """What a run logged, ready to plot: rows of dicts (step, split, and one column per loss term)."""

    rows: list[dict] = field(default_factory=list)

    def series(self, key: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one column for one split ('train' or 'heldout')."""
        pts = [(r["step"], r[key]) for r in self.rows if r.get("split") == split and r.get(key) not in (None, "")]
        if not pts:
            return np.zeros(0), np.zeros(0)
        s, v = zip(*pts)
        return np.asarray(s, float), np.asarray(v, float)

    def first(self, key: str, split: str = "heldout") -> float:
        return float(self.series(key, split)[1][0])

    def last(self, key: str, split: str = "heldout") -> float:
        return float(self.series(key, split)[1][-1])


class CSVLogger:
    """Appends rows to ``<folder>/log.csv`` (and to TensorBoard when the ``tensorboard`` package is installed).

    On resume from step k, rows logged after step k are dropped first, so the file of a resumed run equals
    that of an uninterrupted one. Columns are fixed by the first row's keys plus any later new key.
    """

    def __init__(self, folder: str | os.PathLike, resume_step: int | None = None, tensorboard: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "log.csv"
        self.history = TrainHistory()
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                for r in csv.DictReader(f):
                    row = {k: _parse(v) for k, v in r.items()}
                    if row["step"] <= resume_step:
                        self.history.rows.append(row)
        self._rewrite()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package

                self._tb = SummaryWriter(str(self.folder / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self._tb = None

    def _columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.history.rows:
            cols += [k for k in r if k not in cols]
        return cols

    def _rewrite(self) -> None:
        cols = self._columns()
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols or ["step", "split"])
            w.writeheader()
            for r in self.history.rows:
                w.writerow(r)

    def log(self, step: int, split: str, values: Mapping[str, float]) -> None:
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        cols_before = self._columns()
        self.history.rows.append(row)
        if any(k not in cols_before for k in row):
            self._rewrite()  # a new column: write the whole file again with the wider header
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=cols_before).writerow(row)
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _parse(v: str):
    if v is None or v == "":
        return None
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    except ValueError:
        return v


def progress(iterable: Iterable, enabled: bool = True, **kw):
    """tqdm progress bar (a plain iterator when disabled)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


# --- checkpoints -----------------------------------------------------------------------------------
def checkpoint_path(folder: str | os.PathLike, stem: str, step: int) -> Path:
    """``<folder>/checkpoints/<stem>_<step:06d>-model.pth``, e.g. stem 'auido2exp' (the official file's stem)."""
    return Path(folder) / "checkpoints" / f"{stem}_{step:06d}-model.pth"


def list_checkpoints(folder: str | os.PathLike, stem: str) -> list[tuple[int, Path]]:
    """Periodic checkpoints of a run folder, (step, path) in step order."""
    d = Path(folder) / "checkpoints"
    if not d.is_dir():
        return []
    pat = re.compile(rf"^{re.escape(stem)}_(\d+)-model\.pth$")
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := pat.match(p.name))]
    return sorted(out)


def latest_checkpoint(folder: str | os.PathLike, stem: str) -> Path | None:
    found = list_checkpoints(folder, stem)
    return found[-1][1] if found else None


def save_training_checkpoint(path: str | os.PathLike, modules: Mapping[str, torch.nn.Module],
                             optimizers: Mapping[str, torch.optim.Optimizer], step: int, config,
                             extra: Mapping | None = None) -> Path:
    """One resumable file in the OFFICIAL layout: ``{"model": <official state dict>, "epoch": step, ...}``.

    ``modules`` maps official network names to modules (e.g. ``{"audio2exp": expnet}``); the file is written by
    ``checkpoints.save_official_pth`` so ``load_official`` reads it like a released checkpoint. Beside the
    official keys it holds ``optimizer`` / ``optimizer_<name>`` states, ``step``, ``rng`` (global RNG states),
    ``config`` (a plain dict) and ``extra``.
    """
    from ..official.io import save_official_pth

    payload: dict = {"step": int(step), "rng": rng_state(), "config": _plain(asdict(config))}
    for name, opt in optimizers.items():
        payload["optimizer" if name == "main" else f"optimizer_{name}"] = opt.state_dict()
    if extra:
        payload["extra"] = _plain(dict(extra))
    return save_official_pth(dict(modules), path, epoch=int(step), extra=payload)


def restore_training_state(path: str | os.PathLike, modules: Mapping[str, torch.nn.Module],
                           optimizers: Mapping[str, torch.optim.Optimizer]) -> dict:
    """Load a file written by :func:`save_training_checkpoint` into modules and optimizers; restore the RNGs.

    Returns the whole file (``step``, ``extra``, ...). Only ``torch.load(weights_only=True)`` is used.
    """
    from ..official.io import load_official, read_checkpoint

    ckpt = read_checkpoint(path)
    for name, m in modules.items():
        load_official(m, name, ckpt)
    for name, opt in optimizers.items():
        key = "optimizer" if name == "main" else f"optimizer_{name}"
        if key not in ckpt:
            raise KeyError(f"{path} holds no optimizer state '{key}': it is not a resumable training checkpoint")
        opt.load_state_dict(ckpt[key])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return ckpt


def _plain(x):
    """Config values -> types torch's weights-only loader accepts (tuples -> lists, paths -> str)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (Path,)):
        return str(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


# --- BatchNorm statistics ----------------------------------------------------------------------------
@torch.no_grad()
def precise_batchnorm(modules: torch.nn.Module | Sequence[torch.nn.Module], run_batches: Callable[[], None]) -> None:
    """Re-estimate the running mean / variance of every BatchNorm inside ``modules`` ("precise BN").

    ``run_batches()`` must push calibration batches through the modules; meanwhile they are in train mode and
    each BatchNorm keeps a cumulative (not exponential) average. Weights, momentum and the batch counters are
    left as they were. Small-batch CPU runs need this: the exponential running averages of a network that
    changes fast lag behind it, and the eval-mode network that inference uses is then much worse than the
    training one.
    """
    modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for mod in modules:
        mod.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    run_batches()
    for m, (mom, nbt) in zip(bns, saved):
        m.momentum = mom
        m.num_batches_tracked.copy_(nbt)
    for m, mode in modes:
        m.training = mode
