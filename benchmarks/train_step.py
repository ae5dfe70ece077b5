"""Seconds per training step of face-vid2vid (stage 1) at its CPU preset, with and without the depth-folded mask
conv (``models.facevid2vid.blocks.shallow_conv3d``). Writes benchmarks/results/train_step.md (also part of
``make bench``).

The dense-motion network's 7x7x7 ``mask`` conv over the CPU preset's 4-deep volume is computed, while autograd
records it, as one Conv2d of the depths stacked into channels; "Conv3d" is the same step with oneDNN's own Conv3d
(``FOLD_MIN_KERNEL`` raised past 7). Each variant trains the CPU preset (64 px, tiny networks, 8 pairs a step) on a
small default corpus, for ``detector_steps`` 10 (the preset: 9 extra detector-only updates a step) and 1 (the
generator's step alone); the variants alternate round after round so that a load change on a shared CPU hits all
of them alike. s/step: (time of 2 + N steps - time of 2 steps) / N, median over the rounds; one torch thread.

Usage: python benchmarks/train_step.py [--steps 20] [--rounds 2] [--quick]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fast_mode import _cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _seconds(corpus: Path, out: Path, steps: int, detector_steps: int, fold: bool) -> float:
    import sadtalker_lib.models.facevid2vid.blocks as blocks
    from sadtalker_lib.train.loop import build_cli_stage, run

    kept = blocks.FOLD_MIN_KERNEL
    blocks.FOLD_MIN_KERNEL = kept if fold else 10**6
    try:
        stage = build_cli_stage("facevid2vid", corpus, "cpu", steps=steps, detector_steps=detector_steps,
                                eval_every=10**6, checkpoint_every=10**6, progress=False, num_threads=1,
                                lr_warmup_steps=1)
        stage.heldout_sets = {}  # no held-out report: the steps only
        t0 = time.perf_counter()
        run(stage, out)
        return time.perf_counter() - t0
    finally:
        blocks.FOLD_MIN_KERNEL = kept


def step_table(steps: int, rounds: int) -> str:
    from sadtalker_lib.data import build_default_corpus

    torch.set_num_threads(1)
    variants = [(ds, fold) for ds in (10, 1) for fold in (True, False)]
    times: dict[tuple[int, bool], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus"
        build_default_corpus(corpus, n_clips=6, seed=0, size=128, max_seconds=2.0)
        n = 0
        for r in range(rounds):
            for ds, fold in variants:
                short = _seconds(corpus, Path(d) / f"run{n}", 2, ds, fold)
                long = _seconds(corpus, Path(d) / f"run{n + 1}", 2 + steps, ds, fold)
                n += 2
                times[(ds, fold)].append((long - short) / steps)
                print(f"round {r + 1}: detector_steps {ds}, {'folded' if fold else 'Conv3d'}: "
                      f"{times[(ds, fold)][-1]:.3f} s/step", flush=True)
    lines = [f"### face-vid2vid training step at the CPU preset (64 px, 8 pairs; {steps} steps, median of {rounds} "
             f"rounds, 1 thread)", "",
             "| detector_steps | mask conv | s/step | speed-up |", "|---|---|---|---|"]
    for ds in (10, 1):
        base = statistics.median(times[(ds, False)])
        for fold in (True, False):
            s = statistics.median(times[(ds, fold)])
            label = "folded into a Conv2d (the library's)" if fold else "oneDNN Conv3d"
            lines.append(f"| {ds} | {label} | {s:.3f} | {base / s:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="10 steps x 1 round")
    args = ap.parse_args(argv)
    steps, rounds = (10, 1) if args.quick else (args.steps, args.rounds)
    table = step_table(steps, rounds)
    print(table, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "train_step.md"
    out.write_text(f"# Training-step benchmark\n\nCPU: {_cpu_name() or platform.processor() or platform.machine()} "
                   f"({torch.get_num_threads()} torch thread), torch {torch.__version__}.\n\n{table}\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
