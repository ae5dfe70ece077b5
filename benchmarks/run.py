"""Speed and memory benchmarks of the generation pipeline (`make bench`); writes benchmarks/results/*.md.

1. Seconds per frame of each stage (audio, preprocess, audio->coeffs, render, paste+encode) with the
   official-size networks (seeded weights) at 256 and 512 px. The render stage is timed on
   ``--render-frames`` frames (it costs ~10 s / frame at 256 on a 2-core CPU); the other stages on the
   whole ``--seconds`` of audio.
2. Side by side in one run, alternating (``benchmarks/fast_mode.py``): the official ``make_animation`` batch
   layout (re-encodes the source in every generator call; ``tests/_official_batch.py``) vs our exact render
   (source encoded once) vs ``--precision fast`` and each of its techniques: s/frame, speed-up, PSNR vs exact.
3. Peak resident memory against audio length (10 s, 60 s, 600 s by default) with a tiny renderer at 64 px,
   each length and precision (exact, fast) in a fresh process, frames streamed to an mp4.
4. Paste-back (``benchmarks/paste_back.py``) and a face-vid2vid training step at the CPU preset with and without
   the depth-folded mask conv (``benchmarks/train_step.py``), each in its own process.

Usage: python benchmarks/run.py [--quick] [--sizes 256 512] [--lengths 10 60 600] [--checkpoints DIR]
       [--fast-size 256] [--fast-frames 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """A speech-like test signal: harmonic tone with a syllable-rate envelope and noise (seeded)."""
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * env
    x += 0.02 * np.random.default_rng(0).standard_normal(len(t))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def portrait_path(tmp: Path) -> Path:
    import imageio.v3 as iio
    import skimage.data

    p = tmp / "portrait.png"
    iio.imwrite(p, skimage.data.astronaut())
    return p


def official_folder(arg: str | None) -> Path:
    """A folder of official-format checkpoints: the given one, or seeded ones written by ../shared/reference."""
    if arg:
        return Path(arg)
    from sadtalker_lib.paths import ReferenceMissingError, reference_checkpoints

    try:
        return reference_checkpoints()
    except ReferenceMissingError as e:
        sys.exit(f"no checkpoints: pass --checkpoints DIR (official files) or put ../shared beside the project ({e})")


def stage_table(folder: Path, sizes, seconds: float, render_frames: int, tmp: Path) -> str:
    import torch

    from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline

    rows = []
    img = portrait_path(tmp)
    audio = (speech(seconds), 16000)
    for size in sizes:
        pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, progress=False)
        opts = GenerationOptions(seed=0)
        t0 = time.perf_counter()
        from sadtalker_lib.audio import prepare_audio

        aud = prepare_audio(*audio)
        t_audio = time.perf_counter() - t0
        t0 = time.perf_counter()
        src = pipe.prepare_source(img, "crop")
        t_pre = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = pipe.audio_to_coefficients(src, aud, opts)
        t_coef = time.perf_counter() - t0
        n = aud.num_frames
        # render: time `render_frames` frames through the streaming path (source encoded once)
        opts_r = GenerationOptions(seed=0, batch_size=1)
        t0 = time.perf_counter()
        frames = []
        for batch in pipe.render(src, pred.coeffs[:render_frames], opts_r, progress=False):
            frames.extend(batch)
        t_render = (time.perf_counter() - t0) / render_frames
        # paste + encode: every frame (the rendered ones repeated)
        from sadtalker_lib.video import VideoWriter

        t0 = time.perf_counter()
        with VideoWriter(tmp / f"bench_{size}.mp4", audio=(aud.wav, 16000)) as w:
            for i in range(n):
                w.write(pipe.finish_frame(frames[i % len(frames)], src, opts))
        t_enc = time.perf_counter() - t0
        rows.append((size, n, t_audio / n, t_pre / n, t_coef / n, t_render, t_enc / n))
        del pipe
    lines = [f"### Seconds per frame by stage (official-size networks, seeded weights; {seconds:g} s of audio, "
             f"render timed on {render_frames} frames, batch_size 1, {torch.get_num_threads()} threads)", "",
             "| size | frames | audio | preprocess | audio->coeffs | render | paste+encode | total |",
             "|---|---|---|---|---|---|---|---|"]
    for size, n, a, p, c, r, e in rows:
        lines.append(f"| {size} | {n} | {a:.4f} | {p:.4f} | {c:.4f} | {r:.2f} | {e:.4f} | {a + p + c + r + e:.2f} |")
    return "\n".join(lines)


def _rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB. Linux: VmRSS / VmHWM of /proc/self/status, which belong
    to this program's address space (ru_maxrss would also count a parent's peak from before exec)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return float(fields["VmRSS"].split()[0]) / 1024, float(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def memory_child(seconds: float, tmp: str, precision: str = "exact") -> None:
    """Generate a video of ``seconds`` of audio with a tiny 64 px renderer; print peak RSS (MiB) as JSON."""
    from sadtalker_lib.official.registry import save_networks, seeded_networks, tiny_configs
    from sadtalker_lib.pipeline import TalkingHeadPipeline

    tmp = Path(tmp)
    ck = tmp / "tiny"
    if not (ck / "sadtalker_lab.json").is_file():
        save_networks(ck, seeded_networks(seed=0), tiny_configs(), size=64)
    pipe = TalkingHeadPipeline.from_checkpoints(ck, size=64, progress=False, precision=precision)
    before = _rss_mib()[0]
    t0 = time.perf_counter()
    r = pipe.generate(portrait_path(tmp), (speech(seconds), 16000), out=tmp / f"mem_{seconds:g}.mp4", seed=0,
                      batch_size=8, progress=False)
    peak = _rss_mib()[1]
    if precision != "exact":
        precision = f"{precision} ({'+'.join(pipe.models.policy.techniques)})"
    print(json.dumps({"seconds": seconds, "precision": precision, "frames": r.num_frames, "peak_mib": peak,
                      "before_mib": before, "wall_s": time.perf_counter() - t0}))


MEMORY_TITLE = ("### Peak memory against audio length (tiny renderer [stand-in, seeded], 64 px, frames streamed to "
                "mp4, fresh process each)")


def memory_table(lengths, tmp: Path, precisions=("exact", "fast")) -> str:
    rows = []
    for precision in precisions:
        for s in lengths:
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(s), "--tmp", str(tmp),
                                  "--precision", precision], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [MEMORY_TITLE, "",
             "| precision | audio (s) | frames | RSS after loading (MiB) | peak RSS (MiB) | wall (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['seconds']:g} | {r['frames']} | {r['before_mib']:.0f} "
                     f"| {r['peak_mib']:.0f} | {r['wall_s']:.1f} |")
    lines.append("")
    for precision in dict.fromkeys(r["precision"] for r in rows):
        peaks = [r for r in rows if r["precision"] == precision]
        lo, hi = peaks[0], peaks[-1]
        lines.append(f"- {precision}: peak RSS {hi['peak_mib'] - lo['peak_mib']:+.0f} MiB from {lo['seconds']:g} s to "
                     f"{hi['seconds']:g} s of audio ({hi['frames'] / lo['frames']:.0f}x the frames)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--render-frames", type=int, default=3)
    ap.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600])
    ap.add_argument("--quick", action="store_true",
                    help="256 only, 1 render frame, official / exact / fast / plain autocast once, lengths 5 and 20 s")
    ap.add_argument("--fast-size", type=int, default=256, help="frame size of the side-by-side table")
    ap.add_argument("--fast-frames", type=int, default=4,
                    help="frames per variant and round (side by side; the source is encoded once per video, so too "
                         "few frames understate every variant that does not re-encode it per call)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the side-by-side table")
    ap.add_argument("--memory-precisions", nargs="+", default=["exact", "fast"], choices=["exact", "fast"],
                    help="precisions of the memory table")
    ap.add_argument("--precision", default="exact", help=argparse.SUPPRESS)
    ap.add_argument("--skip-stages", action="store_true",
                    help="memory table only (the other sections of generation.md are kept; no paste-back run)")
    ap.add_argument("--memory-child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.tmp, args.precision)
        return
    if args.quick:
        args.sizes, args.render_frames, args.lengths = [256], 1, [5, 20]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "generation.md"
    with tempfile.TemporaryDirectory() as d:
        parts = []
        if not args.skip_stages:
            parts.append(stage_table(official_folder(args.checkpoints), args.sizes, args.seconds, args.render_frames,
                                     Path(d)))
            print(parts[-1], flush=True)
            from fast_mode import QUICK, side_by_side, write_table

            table, _ = side_by_side(official_folder(args.checkpoints), size=args.fast_size, frames=args.fast_frames,
                                    rounds=args.rounds, variants=list(QUICK) if args.quick else None, tmp=Path(d))
            parts.append(table)
            print(parts[-1], flush=True)
            write_table(table, f"python benchmarks/run.py {' '.join(sys.argv[1:])}")
        elif out.is_file():  # --skip-stages: only the memory table is new; the other sections stay as they were
            kept = out.read_text().split("\n\n### ")[1:]
            parts.extend("### " + p.strip() for p in kept if not p.startswith(MEMORY_TITLE[4:]))
        parts.append(memory_table(args.lengths, Path(d), args.memory_precisions))
        print(parts[-1], flush=True)
    out.write_text("# Generation benchmarks\n\n" + "\n\n".join(parts) + "\n")
    print(f"written {out}")
    if not args.skip_stages:
        for script in ("paste_back.py", "train_step.py"):
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / script)] + ["--quick"] * args.quick, check=True)

if __name__ == "__main__":
    main()
