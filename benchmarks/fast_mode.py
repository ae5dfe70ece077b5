"""Side by side, in ONE run: the official ``make_animation`` vs our exact render vs ``--precision fast`` and each
of its techniques alone (issue 15, item 1). Writes benchmarks/results/fast_mode.md (also part of ``make bench``).

Every variant renders the same frames from the same seeded official-format weights (the parity weights,
``sadtalker_lib.paths.reference_checkpoints()``) and the same inputs; the variants alternate round after round
so that a load change on the shared CPU hits all of them alike. s/frame is the median over the rounds; the
speed-up is against the official ``make_animation`` of the same round. PSNR is over all rendered frames against
our exact frames (which equal the official ones: tests/test_facevid2vid_parity.py), with images in [0, 1].

Usage: python benchmarks/fast_mode.py [--size 256] [--frames 2] [--rounds 2] [--quick] [--checkpoints DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))  # the official batch layout lives with the tests (not the library)
from run import official_folder, portrait_path, speech  # noqa: E402

# label -> techniques (None: the official make_animation; () exact; "fast": the library's choice)
VARIANTS = {
    "official make_animation (fp32)": None,
    "ours exact (fp32)": (),
    "ours fast": "fast",
    "fold-norms only": ("fold-norms",),
    "fuse-spade only (fp32)": ("fuse-spade",),
    "flush-subnormals only (fp32)": ("flush-subnormals",),
    "winograd only (fp32)": ("fold-norms", "winograd"),
    "fold-norms + fuse-spade (fp32; the float32 fast before winograd)": ("fold-norms", "fuse-spade"),
    "fft-conv only (fp32)": ("fold-norms", "fft-conv"),
    "float32 fast (fold-norms + fuse-spade + flush-subnormals + winograd + fft-conv)": (
        "fold-norms", "fuse-spade", "flush-subnormals", "winograd", "fft-conv"),
    "bf16-conv (the previous fast)": ("fold-norms", "bf16-conv"),
    "bf16-conv + bf16-act": ("fold-norms", "bf16-conv", "bf16-act"),
    "fuse-spade + bf16-conv": ("fuse-spade", "bf16-conv"),
    "bf16-conv, all convs": ("bf16-conv", "all-convs"),
    "bf16-conv + channels-last": ("fold-norms", "bf16-conv", "channels-last"),
    "autocast bf16 (plain)": ("autocast",),
}
QUICK = ("official make_animation (fp32)", "ours exact (fp32)", "ours fast", "bf16-conv (the previous fast)",
         "fuse-spade only (fp32)", "flush-subnormals only (fp32)", "winograd only (fp32)", "fft-conv only (fp32)",
         "fold-norms + fuse-spade (fp32; the float32 fast before winograd)")


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [0, 1]; inf when equal."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _models(exact, techniques):
    """A Models on the same (already loaded) networks, with the precision of ``techniques``."""
    from sadtalker_lib import precision as P
    from sadtalker_lib.wrapper import NETWORKS, Models

    nets = {k: getattr(exact, k) for k in NETWORKS}
    if techniques == "fast":
        return Models(**nets, precision="fast")
    keep = () if "all-convs" in techniques else P.GENERATOR_FLOAT32_CONVS  # all-convs: the measurement behind it
    return Models(**nets, precision=P.PrecisionPolicy("custom", tuple(t for t in techniques if t != "all-convs"),
                                                      float32_convs=keep))


def side_by_side(folder: Path, *, size: int = 256, frames: int = 2, rounds: int = 2, variants=None,
                 tmp: Path | None = None, log=print) -> tuple[str, list[dict]]:
    """Render ``frames`` frames with each variant, ``rounds`` times alternating -> (markdown table, rows)."""
    from _official_batch import get_facerender_semantics, make_animation

    from sadtalker_lib.audio import prepare_audio
    from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline
    from sadtalker_lib.steps.render import render_stream

    from sadtalker_lib.precision import native_bf16_cpu

    variants = variants or list(VARIANTS)
    skipped = [] if native_bf16_cpu() else [v for v in variants if isinstance(VARIANTS[v], tuple)
                                            and {"bf16-conv", "autocast"} & set(VARIANTS[v])]
    variants = [v for v in variants if v not in skipped]
    tmp = Path(tmp or tempfile.mkdtemp())
    pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, progress=False)
    src = pipe.prepare_source(portrait_path(tmp), "crop")
    opts = GenerationOptions(seed=0, batch_size=2)
    coeffs = pipe.audio_to_coefficients(src, prepare_audio(speech(max(1.0, frames / 25 + 0.2)), 16000), opts).coeffs
    coeffs = coeffs[:frames]
    windows = pipe.driving_windows(src, coeffs, opts)
    models = {v: (pipe.models if VARIANTS[v] in ((), None) else _models(pipe.models, VARIANTS[v])) for v in variants}

    def run(label):
        m = models[label]
        if VARIANTS[label] is None:  # the official call layout: B rows, the source re-encoded per generator call
            sem = get_facerender_semantics(coeffs, src.coeffs, batch_size=2)
            img = m.image_tensor(src.image).expand(2, -1, -1, -1)
            anim = make_animation(img, sem.source_semantics, sem.target_semantics, kp_detector=m.kp_detector,
                                  generator=m.generator, mapping=m.mapping_crop)
            return sem.frames(anim.frames).float()
        return torch.cat([b.frames for b in render_stream(m, src.image, windows, batch_size=2, progress=False)])

    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}  # CPU seconds of this process (all its threads): less sensitive to other jobs
    outs = {}
    for r in range(rounds):
        for v in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            outs[v] = run(v)
            times[v].append((time.perf_counter() - t0) / frames)
            cpu[v].append((time.process_time() - c0) / frames)
            log(f"round {r + 1}/{rounds} {v}: {times[v][-1]:.2f} s/frame, {cpu[v][-1]:.2f} CPU s/frame")
    ref = outs.get("ours exact (fp32)")
    base = times.get("official make_animation (fp32)")
    rows = []
    for v in variants:
        ratios = [b / t for b, t in zip(base, times[v])] if base else []
        cpu_ratios = [b / t for b, t in zip(cpu["official make_animation (fp32)"], cpu[v])] if base else []
        rows.append(dict(variant=v, s_per_frame=statistics.median(times[v]), all_s=times[v],
                         speedup=statistics.median(ratios) if ratios else float("nan"),
                         cpu_speedup=statistics.median(cpu_ratios) if cpu_ratios else float("nan"),
                         psnr=psnr_db(outs[v], ref) if ref is not None else float("nan"),
                         max_grey=float((outs[v] - ref).abs().max() * 255) if ref is not None else float("nan")))
    lines = [f"### Official vs exact vs fast, {size} px, {frames} frames x {rounds} alternating rounds, batch_size 2, "
             f"{torch.get_num_threads()} threads, parity weights (seeded, official format)", "",
             "| variant | s/frame (median) | s/frame each round | speed vs official (median of per-round ratios) "
             "| speed vs official in CPU seconds | PSNR vs exact (dB) | max diff (grey levels) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['s_per_frame']:.2f} | {' / '.join(f'{t:.2f}' for t in r['all_s'])} "
                     f"| {r['speedup']:.2f}x | {r['cpu_speedup']:.2f}x | {r['psnr']:.1f} | {r['max_grey']:.1f} |")
    if skipped:
        lines += ["", f"Not run: {', '.join(skipped)} -- this CPU has no native bfloat16 (AVX512-BF16 / AMX), where "
                      "bfloat16 convs fall back to reference kernels ~290x slower than float32; ``fast`` here is "
                      "float32 only."]
    return "\n".join(lines), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=None, help="markdown file (default: benchmarks/results/fast_mode.md)")
    ap.add_argument("--quick", action="store_true",
                    help="official, exact, fast, the previous fast (bf16-conv) and fuse-spade alone only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    table, _ = side_by_side(official_folder(args.checkpoints), size=args.size, frames=args.frames,
                            rounds=args.rounds, variants=list(QUICK) if args.quick else None)
    load = (f"Load average (1 / 5 / 15 min) of this {os.cpu_count()}-core machine at the start: "
            f"{' / '.join(f'{x:.2f}' for x in load_before)}; at the end: "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} (other jobs share the CPU: above ~1 per core the "
            f"s/frame columns are slowed, the per-round ratios less so; PSNR does not depend on the load). s/frame "
            f"includes the once-per-video source encoding and keypoints, spread over the rendered frames (the "
            f"official make_animation re-encodes the source in every generator call).")
    table = f"{table}\n\n{load}"
    print(table)
    write_table(table, f"python benchmarks/fast_mode.py {' '.join(sys.argv[1:])}", args.out)


def write_table(table: str, command: str, out: str | os.PathLike | None = None) -> Path:
    """``out`` (default benchmarks/results/fast_mode.md) with ``table`` and the command that wrote it (also
    ``make bench``)."""
    import platform

    from sadtalker_lib.precision import FAST_TECHNIQUES, native_bf16_cpu

    out = Path(out) if out else ROOT / "results" / "fast_mode.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    cpu = _cpu_name() or platform.processor() or platform.machine()
    caps = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
            if os.environ.get(k)}
    if caps:  # e.g. an AVX2-only CPU measured on a newer one
        cpu += (" with its instruction sets capped (" + ", ".join(f"{k}={v}" for k, v in caps.items())
                + "): oneDNN's convolutions and MKL's matrix products use only those")
        command = " ".join(f"{k}={v}" for k, v in caps.items()) + " " + command
    out.write_text(f"# Fast mode side by side\n\nReproduce: `{command}`\n\n`--precision fast` on a CPU with native "
                   f"bfloat16 = {' + '.join(FAST_TECHNIQUES['cpu'])}; on one without = "
                   f"{' + '.join(FAST_TECHNIQUES['cpu-float32'])} (sadtalker_lib/precision.py). This run: {cpu}, "
                   f"native bfloat16: {'yes' if native_bf16_cpu() else 'no'}, torch {torch.__version__}.\n\n{table}\n")
    print(f"written {out}")
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    main()
