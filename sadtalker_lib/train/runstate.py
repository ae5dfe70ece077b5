"""What a training run keeps besides its weights: the loop settings, seeds, the log, resumable checkpoints.

Used by ``train/loop.py`` (the one loop) and re-exported there. A checkpoint stores the modules (official layout
for official networks, so ``load_official`` reads it like a released file; plain state dicts otherwise), the
optimizer states, the step, the global RNG states and the config; :func:`restore_training_state` puts all of it
back. The per-stage hyper-parameters of the paper (learning rates, window lengths, loss weights) live in the stage
files (``expnet.py``, ``posevae.py``, ...), beside their configs.
"""
from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

__all__ = [
    "TrainConfig", "seed_everything", "step_generator", "step_rng", "rng_state", "set_rng_state",
    "CSVLogger", "TrainHistory", "progress", "checkpoint_path", "list_checkpoints", "latest_checkpoint",
    "prune_checkpoints", "save_training_checkpoint", "restore_training_state",
]


@dataclass
class TrainConfig:
    """Loop settings shared by every stage (the stage configs add their loss weights and switches).

    steps: optimizer steps in all (a resumed run continues up to this number).
    batch_size: windows per step. lr: Adam learning rate; adam_betas: Adam betas.
    eval_every: held-out loss every this many steps (and at step 0 and the last step).
    checkpoint_every: write a resumable checkpoint every this many steps (0: only at the end).
    keep_checkpoints: how many periodic checkpoints to keep (older ones are deleted).
    grad_accum: micro-batches per optimizer step (the global batch is cut into world x grad_accum equal parts).
    mixed_precision: "auto" (bf16 on a GPU, "no" on a CPU), "no", "bf16" or "fp16" (Accelerate's names).
    device: "cpu" to stay on the CPU; None: a GPU when there is one. tensorboard: also log through Accelerate's
    TensorBoard tracker (when the package is installed).
    num_threads: torch CPU threads (None: leave torch's setting). progress: tqdm bar.
    lr_milestones / lr_gamma: step decay of every optimizer's lr (as PyTorch's ``MultiStepLR``): the lr is
    multiplied by ``lr_gamma`` at each milestone, given as a fraction of ``steps`` (empty: constant lr).
    lr_warmup_steps: the lr rises linearly over the first this many steps ((step + 1) / lr_warmup_steps of it;
    0: none, the paper's). Adam's first updates move every weight by about the full lr whatever its gradient's
    size, which at a CPU preset's high lr can kill a softmax channel in a few steps
    (results/facerender-motion-cpu-default-corpus.md, section 28).
    ema_decay: optimizer name -> decay per step of an exponential moving average of the weights that optimizer
    trains (``weight_average``); held-out rows, exported files and ``heldout.json`` use the averages. Empty: none
    (the paper's trainings keep none).
    batch_size is GLOBAL: the number of examples per optimizer step over all processes.
    """

    steps: int = 20000
    batch_size: int = 32
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    grad_accum: int = 1
    mixed_precision: str = "auto"
    device: str | None = None
    tensorboard: bool = True
    num_threads: int | None = None
    progress: bool = True
    lr_milestones: tuple[float, ...] = ()
    lr_gamma: float = 0.1
    lr_warmup_steps: int = 0
    ema_decay: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if any(not 0.0 < m < 1.0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of the steps in (0, 1), got {self.lr_milestones}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")

    def lr_factor(self, step: int) -> float:
        """The lr multiplier of (0-based) optimizer step ``step``: ``lr_gamma`` to the number of milestones passed,
        times the warm-up's (step + 1) / ``lr_warmup_steps`` while below 1 (the loop applies it to every optimizer
        before each step, so a resumed run decays the same)."""
        warmup = min(1.0, (step + 1) / self.lr_warmup_steps) if self.lr_warmup_steps else 1.0
        return warmup * self.lr_gamma ** sum(step >= m * self.steps for m in self.lr_milestones)

    @classmethod
    def paper(cls, **changes):
        """The paper's settings: the defaults (presets ``tiny`` / ``cpu`` are the stage configs' classmethods)."""
        return cls(**changes)

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
    """Appends rows to ``<folder>/log.csv`` and keeps them in :attr:`history` (``folder`` None: memory only).

    On resume from step k, rows logged after step k are dropped first, so the file of a resumed run equals
    that of an uninterrupted one. Columns are fixed by the first row's keys plus any later new key.
    (TensorBoard: the loop logs the same values through Accelerate's trackers.)
    """

    def __init__(self, folder: str | os.PathLike | None, resume_step: int | None = None):
        self.history = TrainHistory()
        self.path = None if folder is None else Path(folder) / "log.csv"
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                for r in csv.DictReader(f):
                    row = {k: _parse(v) for k, v in r.items()}
                    if row["step"] <= resume_step:
                        self.history.rows.append(row)
        self._rewrite()

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
        if self.path is None:
            return
        if any(k not in cols_before for k in row):
            self._rewrite()  # a new column: write the whole file again with the wider header
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=cols_before).writerow(row)

    def close(self) -> None:
        pass


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


def prune_checkpoints(folder: str | os.PathLike, stem: str, keep: int) -> None:
    """Delete all but the newest ``keep`` periodic checkpoints of a run folder."""
    for _, old in list_checkpoints(folder, stem)[:-keep] if keep > 0 else list_checkpoints(folder, stem):
        old.unlink()


def save_training_checkpoint(path: str | os.PathLike, modules: Mapping[str, torch.nn.Module],
                             optimizers: Mapping[str, torch.optim.Optimizer], step: int, config,
                             extra: Mapping | None = None) -> Path:
    """One resumable file: ``{<official keys of the modules>, "epoch": step, "step", "rng", "config", ...}``.

    ``modules`` maps names to modules: official network names (e.g. ``{"audio2exp": expnet}``) are written by
    ``save_official_pth`` so ``load_official`` reads the file like a released checkpoint; other names (a network
    with no official file, e.g. the lip reader) go to ``state_dicts``. Beside them: ``optimizer`` /
    ``optimizer_<name>`` states, ``step``, ``rng`` (global RNG states), ``config`` (a plain dict) and ``extra``.
    """
    from ..official.io import save_official_pth, write_checkpoint
    from ..official.layout import OFFICIAL_NETWORKS

    payload: dict = {"step": int(step), "rng": rng_state(), "config": _plain(asdict(config))}
    for name, opt in optimizers.items():
        payload["optimizer" if name == "main" else f"optimizer_{name}"] = opt.state_dict()
    if extra:
        payload["extra"] = _plain(dict(extra))
    official = {k: m for k, m in modules.items() if k in OFFICIAL_NETWORKS}
    other = {k: {n: v.detach().cpu() for n, v in m.state_dict().items()} for k, m in modules.items()
             if k not in OFFICIAL_NETWORKS}
    if other:
        payload["state_dicts"] = other
    if official:
        return save_official_pth(official, path, epoch=int(step), extra=payload)
    return write_checkpoint({"epoch": int(step), **payload}, path)


def restore_training_state(path: str | os.PathLike, modules: Mapping[str, torch.nn.Module],
                           optimizers: Mapping[str, torch.optim.Optimizer]) -> dict:
    """Load a file written by :func:`save_training_checkpoint` into modules and optimizers; restore the RNGs.

    Returns the whole file (``step``, ``extra``, ...). Only ``torch.load(weights_only=True)`` is used.
    """
    from ..official.io import load_official, load_state_dict_checked, read_checkpoint
    from ..official.layout import OFFICIAL_NETWORKS

    ckpt = read_checkpoint(path)
    for name, m in modules.items():
        if name in OFFICIAL_NETWORKS:
            load_official(m, name, ckpt)
        else:
            load_state_dict_checked(m, ckpt["state_dicts"][name], where=f"{path} [{name}]")
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
