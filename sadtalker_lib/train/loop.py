"""THE training loop of every stage, on Hugging Face Accelerate; a stage only says what one step computes.

    stage = ExpNetStage(train, heldout, ExpNetTrainConfig.cpu())    # a Stage: models, step losses, evaluation
    result = run(stage, "runs/expnet")                              # this loop: everything else

The loop owns device placement, DDP (``torchrun`` / ``accelerate launch``: gloo on CPUs, NCCL on GPUs), mixed
precision (bf16 on a GPU, none on a CPU), gradient accumulation, rank-0 logging (``log.csv`` + TensorBoard through
Accelerate's trackers), the held-out evaluation cadence, checkpoint + prune + resume, and the final save in the
official layout (the stage's :meth:`Stage.export`).

Reproducibility. A run is a pure function of (config, data, step): the GLOBAL batch of step ``k`` (indices drawn
by :func:`step_rng`) and every random draw inside it (:func:`step_generator`, drawn for the whole global batch)
come from generators seeded with ``(seed, k)``, so a resumed run needs no sampler state. Process ``r`` of ``W``
takes the contiguous slice ``r`` of the global batch (and of every draw), cut again into ``grad_accum``
micro-batches; with mean losses and DDP's averaged gradients, W processes take the same step as one process on the
whole batch (tests/test_train_loop.py). A checkpoint holds the weights (official layout where there is one), the
optimizer states, the step and the global RNG states; a run killed after step k and resumed ends bit-exact.
``TrainConfig.ema_decay`` keeps moving averages of weights (``weight_average``): they travel in the checkpoints, the
held-out rows evaluate them, and at the last step they replace the live weights before the final save.

BatchNorm under DDP: on GPUs the stage's BatchNorms become ``SyncBatchNorm`` (statistics of the global batch).
torch's SyncBatchNorm does not run on CPUs, so a multi-process CPU run normalises each process's share on its own
(close to, not equal to, a one-process run); :func:`precise_batchnorm` re-estimates the statistics identically on
every process before each evaluation and the final save.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .heldout import HeldoutReport, write_heldout
from .runstate import (  # noqa: F401  (re-exported: the loop's vocabulary)
    CSVLogger,
    TrainConfig,
    TrainHistory,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    progress,
    prune_checkpoints,
    restore_training_state,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
    step_generator,
    step_rng,
)
from .weight_average import WeightAverage

__all__ = [
    "TrainConfig", "TrainHistory", "Stage", "StepContext", "RunContext", "LoopResult", "run", "precise_batchnorm",
    "seed_everything", "step_generator", "step_rng", "STAGES", "register_stage", "build_cli_stage", "NonFiniteLoss",
]


# --- BatchNorm statistics (the one re-estimation routine) -----------------------------------------
@torch.no_grad()
def precise_batchnorm(modules: nn.Module | Sequence[nn.Module], run_batches: Callable[[], None]) -> None:
    """Re-estimate the running mean / variance of every BatchNorm inside ``modules`` ("precise BN").

    ``run_batches()`` must push calibration batches through the modules; meanwhile they are in train mode and
    each BatchNorm keeps a cumulative (not exponential) average. Weights, momentum and the batch counters are left
    as they were; each module gets its train / eval mode back. A ``SyncBatchNorm`` is run as a plain BatchNorm here
    (every process calibrates on the same batches, so the statistics agree without communication). Small-batch CPU
    runs need this: the exponential running averages of a network that changes fast lag behind it.
    """
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for mod in modules:
        mod.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        if isinstance(m, nn.SyncBatchNorm):
            m.forward = nn.modules.batchnorm._BatchNorm.forward.__get__(m)  # local statistics only
    try:
        run_batches()
    finally:
        for m, (mom, nbt) in zip(bns, saved):
            m.momentum = mom
            m.num_batches_tracked.copy_(nbt)
            m.__dict__.pop("forward", None)
        for m, mode in modes:
            m.training = mode


# --- what a stage implements ------------------------------------------------------------------------
class Stage:
    """One training stage: its models, one step's losses, its evaluation. Subclass and override.

    Set in :meth:`build`: ``modules`` {name: module} (saved in every checkpoint; official network names are written
    in the official layout, other names as plain state dicts), ``optimizers`` {"main": ..., other names},
    ``train_modules`` {key: module} (the modules :meth:`train_step` calls with gradients: the loop wraps them for
    DDP; reach them with ``ctx.module(key)``).
    """

    name: str = "stage"  # progress label
    stem: str = "model"  # periodic checkpoints: <out>/checkpoints/<stem>_<step:06d>-model.pth
    config: TrainConfig
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    train_modules: dict[str, nn.Module]

    def before_run(self, out_dir: Path | None) -> None:
        """Once, before the Accelerator exists (e.g. train an auxiliary network with its own :func:`run`)."""

    def build(self, ctx: "RunContext") -> None:
        raise NotImplementedError

    def start(self, ctx: "RunContext", checkpoint: dict | None) -> None:
        """After the resume (``checkpoint``: the file read, or None): precompute features, read ``extra``."""

    def extra_state(self) -> dict:
        """Plain values stored in every checkpoint's ``extra``."""
        return {}

    def num_examples(self) -> int:
        raise NotImplementedError

    def batch_indices(self, step: int) -> np.ndarray:
        """The GLOBAL batch of ``step``: ``batch_size`` distinct examples drawn with ``step_rng(seed, step)``."""
        n = self.num_examples()
        return step_rng(self.config.seed, step).choice(n, size=min(self.config.batch_size, n), replace=False)

    def train_step(self, ctx: "StepContext") -> dict[str, float]:
        """Losses of this process's (micro-)batch ``ctx.indices``; update with ``ctx.update(name, loss)``; return
        the logged terms (floats)."""
        raise NotImplementedError

    def after_step(self, ctx: "RunContext", step: int, terms: dict[str, float]) -> None:
        """After optimizer step ``step`` (1-based) with its logged terms (averaged over processes), e.g. a callback."""

    def evaluate(self, ctx: "RunContext") -> dict[str, float] | None:
        """Held-out numbers (all processes call it; the main one logs them); None: nothing to log."""
        return None

    def finalize(self, ctx: "RunContext") -> None:
        """Before the final checkpoint (all processes), e.g. BatchNorm statistics when no evaluation set them."""

    def export(self, ctx: "RunContext", out_dir: Path | None) -> Path | None:
        """After the final checkpoint: write the official-layout file(s) (when ``ctx.is_main``); return the path."""
        return None

    def heldout_report(self, ctx: "RunContext") -> "HeldoutReport | None":
        """After export (all processes call it): the trained model beside its trivial baselines on held-out data;
        the loop writes it to ``<out>/heldout.json`` (``sadtalker_lib.train.heldout``). None: no file."""
        return None


@dataclass
class LoopResult:
    """What :func:`run` returns: the log, the step reached, the exported file (None when stopped early)."""

    history: TrainHistory
    step: int
    final: Path | None
    out_dir: Path | None


class RunContext:
    """What a stage sees of the run: the Accelerator, device, process rank, wrapped modules."""

    def __init__(self, accelerator, config: TrainConfig, out_dir: Path | None):
        self.accelerator = accelerator
        self.config = config
        self.out_dir = out_dir
        self.wrapped: dict[str, nn.Module] = {}
        self.average: WeightAverage | None = None  # TrainConfig.ema_decay's averages, if any

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def module(self, key: str) -> nn.Module:
        """A train module as the step must call it (DDP-wrapped in a multi-process run)."""
        return self.wrapped[key]

    def reduce_mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Average logged floats over the processes (one all-reduce)."""
        if self.world == 1 or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        t = self.accelerator.reduce(t, "mean")
        return {k: float(v) for k, v in zip(keys, t.tolist())}


class StepContext:
    """One (micro-)batch of one step. ``indices``: this process's examples; ``part``: where they sit in the global
    batch (slice every per-step random draw with :meth:`local`)."""

    def __init__(self, run: RunContext, stage: Stage, step: int, global_indices: np.ndarray, part: slice):
        self.run, self.stage, self.step, self.part = run, stage, step, part
        self.global_size = len(global_indices)
        self.indices = torch.as_tensor(global_indices[part], dtype=torch.long)

    @property
    def device(self) -> torch.device:
        return self.run.device

    def module(self, key: str) -> nn.Module:
        return self.run.module(key)

    def generator(self, stream: int = 0) -> torch.Generator:
        """The CPU generator of this step's random draws (``stream`` separates independent uses)."""
        return step_generator(self.stage.config.seed, self.step, stream)

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor drawn for the whole global batch, on the device."""
        return x[self.part].to(self.device)

    def rand(self, *shape: int, stream: int = 0) -> torch.Tensor:
        """U(0, 1) [local B, *shape], drawn for the global batch with :meth:`generator`."""
        return self.local(torch.rand(self.global_size, *shape, generator=self.generator(stream)))

    def randn(self, *shape: int, stream: int = 0) -> torch.Tensor:
        """N(0, 1) [local B, *shape], drawn for the global batch with :meth:`generator`."""
        return self.local(torch.randn(self.global_size, *shape, generator=self.generator(stream)))

    def update(self, name: str | Sequence[str], loss: torch.Tensor, zero: Sequence[str] = ()) -> None:
        """``backward(loss)`` then (on the micro-batch that completes the step) ``optimizers[name]`` steps and zeroes
        (a sequence of names: each of them); ``zero``: other optimizers whose gradients to drop too (e.g. what a
        generator loss put into D)."""
        acc = self.run.accelerator
        acc.backward(loss)
        for key in (name,) if isinstance(name, str) else name:
            opt = self.stage.optimizers[key]
            opt.step()
            opt.zero_grad(set_to_none=True)
            if self.run.average is not None and acc.sync_gradients:  # the micro-batch that completes the step
                self.run.average.update(key)
        for other in zero:
            self.stage.optimizers[other].zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def frozen(self, key: str):
        """The unwrapped train module ``key`` with its parameters frozen: a generator loss flows through it (e.g. a
        discriminator) without putting gradients into it (and without DDP bookkeeping)."""
        m = self.run.accelerator.unwrap_model(self.run.wrapped[key])
        flags = [p.requires_grad for p in m.parameters()]
        for p in m.parameters():
            p.requires_grad_(False)
        try:
            yield m
        finally:
            for p, f in zip(m.parameters(), flags):
                p.requires_grad_(f)


# --- the loop ------------------------------------------------------------------------------------------
def _accelerator(config: TrainConfig, out_dir: Path | None, is_tb: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import GradientAccumulationPlugin

    cpu = config.device == "cpu" or (config.device is None and not torch.cuda.is_available())
    mp = config.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else "bf16"
    # Accelerate keeps one state per process; runs in one process (tests, notebooks, a stage that trains a helper
    # network) may ask for another precision or device: start that state afresh (never inside a distributed run)
    if PartialState._shared_state and PartialState().num_processes == 1:
        if cpu and PartialState().device.type != "cpu":
            AcceleratorState._reset_state(reset_partial_state=True)
        elif AcceleratorState._shared_state.get("_mixed_precision", mp) != mp:
            AcceleratorState._reset_state()
    log_with = "tensorboard" if (is_tb and out_dir is not None) else None
    return Accelerator(cpu=cpu, mixed_precision=mp, log_with=log_with,
                       project_dir=str(out_dir) if out_dir is not None else None,
                       gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=config.grad_accum,
                                                                               sync_with_dataloader=False))


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _shares(n: int, world: int, rank: int, accum: int) -> list[slice]:
    """This process's micro-batch slices of a global batch of n (contiguous; equal sizes)."""
    if n % (world * accum):
        raise ValueError(f"the global batch of {n} examples must split evenly over {world} process(es) x "
                         f"{accum} accumulation step(s); choose batch_size as a multiple of {world * accum}")
    size = n // world
    micro = size // accum
    return [slice(rank * size + i * micro, rank * size + (i + 1) * micro) for i in range(accum)]


@contextlib.contextmanager
def _cpu_bf16_without_onednn(acc):
    """Training steps under bf16 autocast on a CPU run on ATen's own kernels, not oneDNN's.

    oneDNN's bf16 Conv3d weight gradient (torch 2.14.1, kernel ``jit_bf16:avx512_core_bf16``, used on CPUs with
    AVX512-BF16) corrupts the heap for a 7x7x7 kernel over a volume of depth 4 (not over depth 5 to 8): the process
    aborts ("double free or corruption") in the first backward of the tiny / cpu presets' dense-motion ``mask`` conv.
    bf16 on a CPU only stands in for a GPU run (``mixed_precision`` "auto" is "no" there), so slower and correct
    wins. Seen in session 33 on the 2-core AMD EPYC with AVX512-BF16; a GPU never takes this path."""
    if acc.device.type != "cpu" or acc.mixed_precision != "bf16":
        yield
        return
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


class NonFiniteLoss(FloatingPointError):
    """The training loss stopped being finite (the weights are then NaN too): the run stops instead of training on."""


# consecutive non-finite training losses tolerated per Accelerate precision: fp16's GradScaler skips such steps
# while it lowers its scale (from 2**16, one halving per skipped step); otherwise the weights are already NaN
NONFINITE_LOSS_STEPS = {"fp16": 32}


def _nonfinite_message(stage: Stage, step: int, loss: float, mixed_precision: str, out_dir: Path | None) -> str:
    found = latest_checkpoint(out_dir, stage.stem) if out_dir is not None else None
    kept = f"the newest checkpoint, {found}, is from before it" if found is not None else "no checkpoint was written"
    hint = (f"it trained under mixed precision {mixed_precision!r}: try --mixed-precision no "
            "(TrainConfig.mixed_precision='no'), " if mixed_precision != "no" else "try ")
    return (f"{stage.name}: the training loss is {loss} at step {step}; stopped ({kept}). {hint}a lower learning "
            f"rate, or --resume from that checkpoint with other settings")


def set_lr_factor(optimizers, factor: float) -> None:
    """Each parameter group's lr = its starting lr (kept as ``base_lr`` in the group, so checkpoints carry it) x
    ``factor`` (``TrainConfig.lr_factor``)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


def run(stage: Stage, out_dir: str | os.PathLike | None, *, resume: bool = True,
        stop_after: int | None = None) -> LoopResult:
    """Train ``stage`` for ``stage.config.steps`` optimizer steps (resuming from the newest checkpoint in ``out_dir``
    when ``resume``). ``out_dir`` None: no files (log in memory only). ``stop_after``: stop after this many steps
    without the final save (simulates a killed run)."""
    config = stage.config
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    stage.before_run(out_dir)
    acc = _accelerator(config, out_dir, config.tensorboard and _tensorboard_available())
    ctx = RunContext(acc, config, out_dir)
    stage.build(ctx)
    average = WeightAverage(stage.modules, stage.optimizers, config.ema_decay) if config.ema_decay else None
    if acc.num_processes > 1 and acc.device.type != "cpu":
        for m in stage.train_modules.values():
            nn.SyncBatchNorm.convert_sync_batchnorm(m)  # BN children replaced in place; parameters kept

    start, ckpt = 0, None
    found = latest_checkpoint(out_dir, stage.stem) if (resume and out_dir is not None) else None
    if found is not None:
        ckpt = restore_training_state(found, stage.modules, stage.optimizers)
        start = int(ckpt["step"])
        if average is not None:
            average.restore(ckpt)
    keys = list(stage.train_modules)
    names = list(stage.optimizers)
    prepared = acc.prepare(*[stage.train_modules[k] for k in keys], *[stage.optimizers[n] for n in names])
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)
    ctx.wrapped = dict(zip(keys, prepared[:len(keys)]))
    stage.optimizers = dict(zip(names, prepared[len(keys):]))
    for m in stage.modules.values():
        m.to(acc.device)
    if average is not None:
        average.to(acc.device)
        ctx.average = average
    stage.start(ctx, ckpt)
    main_dir = out_dir if acc.is_main_process else None
    logger = CSVLogger(main_dir, resume_step=start if found is not None else None)
    if main_dir is not None and acc.log_with:
        acc.init_trackers("tensorboard")

    def log(step: int, split: str, values: Mapping[str, float] | None):
        if values and acc.is_main_process:
            logger.log(step, split, values)
            if acc.log_with:
                acc.log({f"{split}/{k}": float(v) for k, v in values.items()}, step=step)

    def save(step: int):
        if out_dir is None:
            return
        if acc.is_main_process:
            modules = {**stage.modules, **(average.checkpoint_modules() if average is not None else {})}
            save_training_checkpoint(checkpoint_path(out_dir, stage.stem, step), modules, stage.optimizers,
                                     step, config, extra=stage.extra_state())
            prune_checkpoints(out_dir, stage.stem, config.keep_checkpoints)
        acc.wait_for_everyone()

    def evaluate():  # with the averages in the live modules (TrainConfig.ema_decay), else the live weights
        with average.swapped_in() if average is not None else contextlib.nullcontext():
            return stage.evaluate(ctx)

    if start == 0:
        log(0, "heldout", evaluate())
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    train_wrapped = list(ctx.wrapped.values())
    nonfinite = 0  # consecutive steps with a NaN / inf training loss
    for step in progress(range(start, end), config.progress and acc.is_main_process, desc=stage.name,
                         initial=start, total=config.steps):
        idx = np.asarray(stage.batch_indices(step))
        set_lr_factor(stage.optimizers.values(), config.lr_factor(step))
        sums: dict[str, float] = {}
        parts = _shares(len(idx), acc.num_processes, acc.process_index, config.grad_accum)
        for part in parts:
            with acc.accumulate(*train_wrapped), acc.autocast(), _cpu_bf16_without_onednn(acc):
                terms = stage.train_step(StepContext(ctx, stage, step, idx, part))
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) / len(parts)
        done = step + 1
        terms = ctx.reduce_mean(sums)
        log(done, "train", terms)
        nonfinite = nonfinite + 1 if not np.isfinite(terms.get("loss", 0.0)) else 0
        if nonfinite > NONFINITE_LOSS_STEPS.get(acc.mixed_precision, 0):
            logger.close()
            raise NonFiniteLoss(_nonfinite_message(stage, done, terms["loss"], acc.mixed_precision, out_dir))
        stage.after_step(ctx, done, terms)
        if done == config.steps and average is not None:
            average.load_into_live()  # the final evaluation, save, export and report: the averaged weights
        if done % config.eval_every == 0 or done == config.steps:
            log(done, "heldout", evaluate())
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save(done)
    final = None
    if end == config.steps:
        stage.finalize(ctx)
        save(config.steps)
        final = stage.export(ctx, out_dir)
        report = stage.heldout_report(ctx)
        if report is not None and out_dir is not None and acc.is_main_process:
            write_heldout(report, out_dir)
        acc.wait_for_everyone()
    logger.close()
    acc.end_training()
    acc.free_memory()
    return LoopResult(history=logger.history, step=end, final=final, out_dir=out_dir)


# --- stages for the command line ---------------------------------------------------------------------------
#: CLI stage name -> the module that defines ``cli_stage(corpus, preset, **overrides) -> Stage`` (imported on use).
STAGES: dict[str, str] = {
    "regressor": "sadtalker_lib.train.regressor",
    "expnet": "sadtalker_lib.train.expnet",
    "lipreader": "sadtalker_lib.train.lipreader",
    "posevae": "sadtalker_lib.train.posevae",
    "facevid2vid": "sadtalker_lib.train.facevid2vid",
    "mapping": "sadtalker_lib.train.mapping",
    "syncnet": "sadtalker_lib.train.syncnet",
}


def register_stage(name: str, module: str) -> None:
    """Add (or move) a CLI stage: ``module`` must define ``cli_stage(corpus, preset, **overrides) -> Stage``."""
    STAGES[name] = module


def build_cli_stage(name: str, corpus: str | os.PathLike, preset: str, **overrides) -> Stage:
    """The stage ``name`` on a corpus folder with a preset ('tiny', 'cpu', 'paper') and config overrides."""
    import importlib

    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGES)}")
    if preset not in ("tiny", "cpu", "paper"):
        raise ValueError(f"preset must be tiny, cpu or paper, got {preset!r}")
    return importlib.import_module(STAGES[name]).cli_stage(Path(corpus), preset, **overrides)
