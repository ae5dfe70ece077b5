"""GPU benchmark (issue 15, item 2): frames/s of the official ``make_animation`` vs ours (exact, fast) on ONE CUDA
device in one run, at 256 and 512 px, and the time share of everything outside the renderer in a full
``generate`` (audio, preprocess, audio->coeffs, paste + encode). Writes benchmarks/results/gpu.md.

Exits with a message (status 2) when torch sees no CUDA device: CI and the 2-core CPU never run it.

Usage: python benchmarks/gpu.py [--sizes 256 512] [--frames 32] [--rounds 3] [--seconds 4] [--checkpoints DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))
from fast_mode import psnr_db  # noqa: E402
from run import official_folder, portrait_path, speech  # noqa: E402


def _sync():
    torch.cuda.synchronize()


def render_rates(folder: Path, size: int, frames: int, rounds: int, tmp: Path) -> list[dict]:
    """frames/s of official make_animation (batch 2, as official), ours exact and ours fast (auto batch size)."""
    from _official_batch import get_facerender_semantics, make_animation

    from sadtalker_lib.audio import prepare_audio
    from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline
    from sadtalker_lib.precision import auto_batch_size
    from sadtalker_lib.steps.render import render_stream
    from sadtalker_lib.wrapper import NETWORKS, Models

    pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, device="cuda", progress=False)
    fast = Models(**{k: getattr(pipe.models, k) for k in NETWORKS}, device="cuda", precision="fast")
    src = pipe.prepare_source(portrait_path(tmp), "crop")
    opts = GenerationOptions(seed=0, batch_size=2)
    coeffs = pipe.audio_to_coefficients(src, prepare_audio(speech(frames / 25 + 0.5), 16000), opts).coeffs[:frames]
    windows = pipe.driving_windows(src, coeffs, opts)
    batch = auto_batch_size("cuda", size)

    def official():
        sem = get_facerender_semantics(coeffs, src.coeffs, batch_size=2)
        img = pipe.models.image_tensor(src.image).expand(2, -1, -1, -1)
        m = pipe.models
        return sem.frames(make_animation(img, sem.source_semantics, sem.target_semantics, kp_detector=m.kp_detector,
                                         generator=m.generator, mapping=m.mapping_crop).frames).float().cpu()

    def ours(models, b):
        return lambda: torch.cat([x.frames for x in render_stream(models, src.image, windows, batch_size=b,
                                                                  progress=False)])

    variants = {"official make_animation (fp32, batch 2)": official, "ours exact (fp32, batch 2)": ours(pipe.models, 2),
                f"ours exact (fp32, auto batch {batch})": ours(pipe.models, batch),
                f"ours fast (auto batch {batch})": ours(fast, batch)}
    for f in variants.values():  # warm-up (cuDNN autotuning, allocator)
        f()
    times, outs = {k: [] for k in variants}, {}
    for _ in range(rounds):
        for k, f in variants.items():
            _sync()
            t0 = time.perf_counter()
            outs[k] = f()
            _sync()
            times[k].append(time.perf_counter() - t0)
    ref = outs["ours exact (fp32, batch 2)"]
    return [dict(size=size, variant=k, fps=frames / statistics.median(v), psnr=psnr_db(outs[k], ref))
            for k, v in times.items()]


def outside_share(folder: Path, size: int, seconds: float, tmp: Path) -> dict:
    """A full generate with the fast precision: seconds per stage and the share outside the renderer."""
    from sadtalker_lib.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, device="cuda", precision="fast", progress=False)
    audio = (speech(seconds), 16000)
    pipe.generate(portrait_path(tmp), audio, out=tmp / "warm.mp4", seed=0, progress=False)
    r = pipe.generate(portrait_path(tmp), audio, out=tmp / f"gpu_{size}.mp4", seed=0, progress=False,
                      preprocess="full")
    t = r.timings
    return dict(size=size, frames=r.num_frames, render=t["render"], total=t["total"],
                outside=1 - t["render"] / t["total"], **{k: t[k] for k in ("audio", "preprocess", "audio_to_coeffs",
                                                                            "paste_encode")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="audio length of the full generate (time shares)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device and torch sees none (torch.cuda.is_available() is False); "
              "nothing measured. Run it on a GPU machine: python benchmarks/gpu.py", file=sys.stderr)
        sys.exit(2)
    folder = official_folder(args.checkpoints)
    rows, shares = [], []
    with tempfile.TemporaryDirectory() as d:
        for size in args.sizes:
            rows += render_rates(folder, size, args.frames, args.rounds, Path(d))
            shares.append(outside_share(folder, size, args.seconds, Path(d)))
    name = torch.cuda.get_device_name()
    lines = [f"# GPU benchmark ({name}, torch {torch.__version__})", "",
             f"Reproduce: `python benchmarks/gpu.py {' '.join(sys.argv[1:])}`", "",
             f"### Render frames/s, {args.frames} frames x {args.rounds} alternating rounds (median), parity weights",
             "", "| size | variant | frames/s | vs official | PSNR vs exact (dB) |", "|---|---|---|---|---|"]
    for r in rows:
        base = next(x["fps"] for x in rows if x["size"] == r["size"] and x["variant"].startswith("official"))
        lines.append(f"| {r['size']} | {r['variant']} | {r['fps']:.2f} | {r['fps'] / base:.2f}x | {r['psnr']:.1f} |")
    lines += ["", f"### Full generate (fast, --preprocess full, {args.seconds:g} s of audio): seconds per stage", "",
              "| size | frames | audio | preprocess | audio->coeffs | render | paste+encode | total "
              "| share outside the renderer |", "|---|---|---|---|---|---|---|---|---|"]
    for s in shares:
        lines.append(f"| {s['size']} | {s['frames']} | {s['audio']:.2f} | {s['preprocess']:.2f} "
                     f"| {s['audio_to_coeffs']:.2f} | {s['render']:.2f} | {s['paste_encode']:.2f} | {s['total']:.2f} "
                     f"| {100 * s['outside']:.0f}% |")
    out = ROOT / "results" / "gpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written {out}")


if __name__ == "__main__":
    main()
