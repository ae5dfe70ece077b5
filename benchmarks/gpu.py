"""GPU benchmark (issue 15, item 2): frames/s of the official ``make_animation`` vs ours (exact, each precision
technique, fast) on ONE CUDA device in one run, at 256 and 512 px, with PSNR against strict float32 and the peak
GPU memory; the time share of everything outside the renderer in a full ``generate`` (audio, preprocess,
audio->coeffs, paste + encode); GPU memory against audio length. Writes benchmarks/results/gpu.md (or --out)
after every section, so a run stopped early keeps what it measured.

Exits with a message (status 2) when torch sees no CUDA device, unless ``--device cpu`` is given: that is a dry
run of the same code on the CPU (tiny sizes, numbers not meant as results), used to check the script before a
GPU is available, and to record the face landmarks that ``--landmarks`` replays on a GPU machine without dlib.

Usage: python benchmarks/gpu.py [--sizes 256 512] [--rounds 3] [--seconds 4] [--checkpoints DIR]
                                [--landmarks FILE] [--max-seconds 480] [--out FILE]
       python benchmarks/gpu.py --device cpu --sizes 256 --frames 2 --rounds 1 --record-landmarks FILE (dry run)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import hashlib
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))
from fast_mode import psnr_db  # noqa: E402
from run import official_folder, portrait_path, speech  # noqa: E402

T0 = time.perf_counter()


class RecordedLandmarks:
    """A face detector that replays 68-point landmarks recorded by dlib on another machine (a GPU machine may
    not have dlib or its 100 MB shape-predictor file). An image is matched by content hash, else by the
    recorded image of the same shape with the nearest 32x32 thumbnail (a crop made by another OpenCV build can
    differ by a grey level). With ``detector`` given it records instead: every call is passed on and kept."""

    def __init__(self, path: Path, detector=None):
        self.path, self.detector = Path(path), detector
        self.items: list[dict] = []
        if detector is None:
            data = np.load(self.path)
            self.items = [dict(key=str(k), shape=tuple(s), thumb=t, lm=lm) for k, s, t, lm in
                          zip(data["keys"], data["shapes"], data["thumbs"], data["landmarks"])]

    @staticmethod
    def _describe(image: np.ndarray) -> tuple[str, tuple, np.ndarray]:
        import cv2

        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        thumb = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        return key, image.shape, thumb

    def landmarks(self, image) -> np.ndarray:
        from sadtalker_lib.face.detect import load_image

        img = load_image(image)
        key, shape, thumb = self._describe(img)
        if self.detector is not None:
            lm = self.detector.landmarks(img)
            self.items.append(dict(key=key, shape=shape, thumb=thumb, lm=lm))
            return lm
        same = [it for it in self.items if it["key"] == key]
        if not same:
            same = sorted((it for it in self.items if it["shape"] == shape),
                          key=lambda it: float(np.abs(it["thumb"] - thumb).mean()))
        if not same:
            raise KeyError(f"no landmarks recorded for an image of shape {shape}: record them with --record-landmarks")
        return same[0]["lm"].copy()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(self.path, keys=np.array([it["key"] for it in self.items]),
                 shapes=np.array([it["shape"] for it in self.items]),
                 thumbs=np.stack([it["thumb"] for it in self.items]),
                 landmarks=np.stack([it["lm"] for it in self.items]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _backend(device: torch.device, tf32: bool, autotune: bool = False):
    """cuDNN TF32 convolutions on / off (PyTorch's default is on: what the official code gets on a GPU) and cuDNN
    autotuning (``torch.backends.cudnn.benchmark``, default off)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = tf32, autotune
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old


def _peak_reset(device) -> int:
    """Start a peak-memory window; returns the bytes allocated now (the weights resident on the GPU)."""
    if device.type != "cuda":
        return 0
    gc.collect()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _peak_gib(device, base: int = 0) -> float:
    """Peak GPU memory since :func:`_peak_reset`, above ``base`` bytes (GiB; nan on a CPU)."""
    return (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else float("nan")


def variants(device: torch.device, batch: int) -> dict:
    """name -> (precision policy or 'official', renderer dtype, batch size, (TF32 convs, cuDNN autotuning)). The
    reference of the PSNR column is the first: ours exact in strict float32 (TF32 off)."""
    from sadtalker_lib.precision import FAST_TECHNIQUES, PrecisionPolicy, low_precision_dtype, resolve

    low = low_precision_dtype(device)
    lname = "bf16" if low == torch.bfloat16 else "fp16"
    fast = resolve("fast", device)

    def custom(*t, dtype=low):
        return PrecisionPolicy("custom", tuple(t), dtype)

    exact, f32, f16 = PrecisionPolicy("exact"), torch.float32, torch.float16
    tf32, strict, tuned = (True, False), (False, False), (True, True)
    return {
        f"ours exact, strict fp32 (TF32 off), batch {batch}": (exact, f32, batch, strict),
        "official make_animation (fp32, PyTorch defaults: TF32 convs), batch 2": ("official", f32, 2, tf32),
        "ours exact (fp32, TF32 convs), batch 2": (exact, f32, 2, tf32),
        f"ours exact (fp32, TF32 convs), auto batch {batch}": (exact, f32, batch, tf32),
        f"fold-norms + channels-last (fp32, TF32), batch {batch}": (custom("fold-norms", "channels-last"), f32, batch,
                                                                    tf32),
        f"autocast {lname} (plain), batch {batch}": (custom("fold-norms", "autocast"), f32, batch, tf32),
        f"bf16-conv in {lname}, batch {batch}": (custom("fold-norms", "bf16-conv"), f32, batch, tf32),
        f"ours fast ({'+'.join(fast.techniques)}, {lname}), batch {batch}": (fast, f32, batch, tf32),
        f"ours fast + cuDNN autotuning (cudnn.benchmark), batch {batch}": (fast, f32, batch, tuned),
        f"fast in fp16, batch {batch}": (custom(*FAST_TECHNIQUES["cuda"], dtype=f16), f32, batch, tf32),
        f"whole renderer in fp16 (.half(), the community fork's way), batch {batch}": (exact, f16, batch, tf32),
        f"ours fast + torch.compile, batch {batch}": (custom(*fast.techniques, "compile", dtype=low), f32, batch, tf32),
    }


def render_rates(folder: Path, size: int, frames: int | None, rounds: int, tmp: Path, device: torch.device,
                 skip: set[str], deadline: float, log, compile_reserve_s: float = 150.0) -> list[dict]:
    """One row per variant: frames/s (median of ``rounds`` alternating rounds after a warm-up call), the warm-up
    (first call) seconds, peak GPU memory, PSNR against strict fp32."""
    from _official_batch import get_facerender_semantics, make_animation

    from sadtalker_lib.audio import prepare_audio
    from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline
    from sadtalker_lib.precision import auto_batch_size
    from sadtalker_lib.steps.render import render_stream
    from sadtalker_lib.wrapper import NETWORKS, RENDERER, Models

    pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, device=str(device), progress=False,
                                                detector=DETECTOR)
    batch = auto_batch_size(device, size)
    frames = frames or 2 * batch  # whole batches: a compiled render (dynamic=False) sees one shape
    src = pipe.prepare_source(portrait_path(tmp), "crop")
    opts = GenerationOptions(seed=0, batch_size=2)
    coeffs = pipe.audio_to_coefficients(src, prepare_audio(speech(frames / 25 + 0.5), 16000), opts).coeffs[:frames]
    windows = pipe.driving_windows(src, coeffs, opts)
    nets = {k: getattr(pipe.models, k) for k in NETWORKS}

    def official():
        sem = get_facerender_semantics(coeffs, src.coeffs, batch_size=2)
        m = pipe.models
        img = m.image_tensor(src.image).expand(2, -1, -1, -1)
        source_sem, target_sem = sem.source_semantics.to(device), sem.target_semantics.to(device)  # as official
        return sem.frames(make_animation(img, source_sem, target_sem, kp_detector=m.kp_detector,
                                         generator=m.generator, mapping=m.mapping_crop).frames).float().cpu()

    def ours(models, b):
        return lambda: torch.cat([x.frames.float() for x in render_stream(models, src.image, windows, batch_size=b,
                                                                          progress=False)])

    runs, rows = {}, []
    for name, (policy, dtype, b, flags) in variants(device, batch).items():
        if any(s in name for s in skip):
            continue
        if "compile" in name and deadline - time.perf_counter() < compile_reserve_s:
            log(f"{size} px {name}: skipped, less than {compile_reserve_s:g} s of the time budget left to compile")
            continue
        try:
            if policy == "official":
                fn = official
            else:
                n = {k: (copy.deepcopy(v) if dtype == torch.float16 and k in RENDERER and v is not None else v)
                     for k, v in nets.items()}  # Models(dtype=...) converts in place: not the shared networks
                fn = ours(Models(**n, device=device, dtype=dtype, precision=policy), b)
            with _backend(device, *flags):
                _sync(device)
                _peak_reset(device)
                t = time.perf_counter()
                fn()  # warm-up: cuDNN autotuning, the allocator, torch.compile's compilation
                _sync(device)
                runs[name] = dict(fn=fn, flags=flags, first_s=time.perf_counter() - t, times=[], out=None)
        except Exception as e:  # noqa: BLE001 - a variant that fails is reported, the others still run
            log(f"{size} px {name}: FAILED {type(e).__name__}: {e}")
            traceback.print_exc()
            rows.append(dict(size=size, variant=name, error=f"{type(e).__name__}: {str(e)[:120]}"))
        if time.perf_counter() > deadline:
            log("time budget reached: the remaining variants are skipped")
            break
    for _ in range(rounds):
        for name, r in runs.items():
            with _backend(device, *r["flags"]):
                _sync(device)
                base = _peak_reset(device)
                t = time.perf_counter()
                r["out"] = r["fn"]()
                _sync(device)
                r["times"].append(time.perf_counter() - t)
                r["peak_gib"] = _peak_gib(device, base)
    ref = next(iter(runs.values()))["out"] if runs else None
    for name, r in runs.items():
        fps = frames / statistics.median(r["times"])
        rows.append(dict(size=size, variant=name, frames=frames, fps=fps, first_s=r["first_s"],
                         peak_gib=r["peak_gib"], psnr=psnr_db(r["out"], ref)))
    if device.type == "cuda" and ref is not None:  # the same exact code on the CPU, first 2 frames
        cpu = Models(**{k: (v.float().cpu() if v is not None else v) for k, v in nets.items()}, device="cpu")
        with torch.no_grad():
            out = torch.cat([x.frames for x in render_stream(cpu, src.image, windows, batch_size=2, stop=2,
                                                             progress=False)])
        rows.append(dict(size=size, variant="ours exact on this machine's CPU (first 2 frames), vs strict fp32 GPU",
                         frames=2, psnr=psnr_db(out, ref[:2])))
        for k, v in nets.items():
            if v is not None:
                v.to(device)
    return rows


def outside_share(folder: Path, size: int, seconds: float, tmp: Path, device: torch.device) -> dict:
    """A full generate (fast, --preprocess full): seconds per stage, the share outside the renderer, peak GPU
    memory."""
    from sadtalker_lib.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, device=str(device), precision="fast",
                                                progress=False, detector=DETECTOR)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    audio = (speech(min(seconds, 1.0)), 16000)
    pipe.generate(portrait_path(tmp), audio, out=tmp / "warm.mp4", seed=0, progress=False, preprocess="full")
    _peak_reset(device)
    r = pipe.generate(portrait_path(tmp), (speech(seconds), 16000), out=tmp / f"gpu_{size}.mp4", seed=0,
                      progress=False, preprocess="full")
    t = r.timings
    return dict(size=size, frames=r.num_frames, render=t["render"], total=t["total"], peak_gib=_peak_gib(device),
                outside=1 - t["render"] / t["total"], **{k: t.get(k, 0.0) for k in ("audio", "preprocess",
                                                                                 "audio_to_coeffs", "paste_encode")})


DETECTOR = None


def _num(x, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _table(args, rows, shares, memory, notes, device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU DRY RUN (not a result)"
    lines = [f"# GPU benchmark ({name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
             f"{os.cpu_count()} CPU cores)", "",
             f"Reproduce: `python benchmarks/gpu.py {' '.join(sys.argv[1:])}`", "",
             "Parity weights (seeded, official format, from ../shared/reference/make_checkpoints.py). The frames of "
             "one clip, rendered whole by each variant in alternating rounds; frames/s is the median over the rounds "
             "after one warm-up call (its seconds are the 'first call' column: cuDNN autotuning, torch.compile). "
             "PSNR is against ours exact in strict float32 (TF32 off) on the same GPU. The official code runs with "
             "PyTorch's defaults, which allow TF32 in cuDNN convolutions.", "",
             f"### Render frames/s, {args.rounds} alternating rounds (median)", "",
             "| size | variant | frames | frames/s | vs official | first call (s) | peak GPU GiB above the weights "
             "| PSNR vs strict fp32 "
             "(dB) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['variant']} | failed: {r['error']} | | | | | |")
            continue
        base = next((x.get("fps") for x in rows if x["size"] == r["size"] and x["variant"].startswith("official")
                     and "fps" in x), None)
        fps = r.get("fps")
        lines.append(f"| {r['size']} | {r['variant']} | {r['frames']} | {_num(fps, 1)} | "
                     f"{'' if fps is None or not base else f'{fps / base:.2f}x'} | "
                     f"{_num(r.get('first_s'), 1)} | {_num(r.get('peak_gib'), 2)} | {r['psnr']:.1f} |")
    if shares:
        lines += ["", f"### Full generate (fast, --preprocess full, {args.seconds:g} s of audio): seconds per stage",
                  "",
                  "| size | frames | audio | preprocess | audio->coeffs | render | paste+encode | total "
                  "| share outside the renderer | peak GPU GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
        for s in shares:
            lines.append(f"| {s['size']} | {s['frames']} | {s['audio']:.2f} | {s['preprocess']:.2f} "
                         f"| {s['audio_to_coeffs']:.2f} | {s['render']:.2f} | {s['paste_encode']:.2f} "
                         f"| {s['total']:.2f} | {100 * s['outside']:.0f}% | {s['peak_gib']:.2f} |")
    if memory:
        lines += ["", "### GPU memory against audio length (fast, --preprocess full)", "",
                  "| size | audio (s) | frames | peak GPU GiB | wall (s) |", "|---|---|---|---|---|"]
        lines += [f"| {m['size']} | {m['seconds']:g} | {m['frames']} | {m['peak_gib']:.2f} | {m['total']:.1f} |"
                  for m in memory]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main() -> None:
    global DETECTOR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a dry run of the code)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frames", type=int, default=None, help="frames per render (default: 2 x the auto batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="audio length of the full generate (time shares)")
    ap.add_argument("--memory-seconds", type=float, nargs="*", default=[4.0, 16.0],
                    help="audio lengths of the GPU-memory rows (256 px); none: skip")
    ap.add_argument("--skip", nargs="*", default=[], help="skip variants whose name contains any of these")
    ap.add_argument("--landmarks", default=None, help="replay face landmarks recorded with --record-landmarks")
    ap.add_argument("--record-landmarks", default=None, help="record the dlib landmarks this run uses to FILE")
    ap.add_argument("--max-seconds", type=float, default=1e9, help="skip what is left after this many seconds")
    ap.add_argument("--compile-reserve-s", type=float, default=150.0,
                    help="skip torch.compile when less of the time budget is left")
    ap.add_argument("--out", default=str(ROOT / "results" / "gpu.md"))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device and torch sees none (torch.cuda.is_available() is False); "
              "nothing measured. Run it on a GPU machine, or dry-run the code with --device cpu", file=sys.stderr)
        sys.exit(2)
    if args.landmarks:
        DETECTOR = RecordedLandmarks(args.landmarks)
    elif args.record_landmarks:
        from sadtalker_lib.face.detect import default_detector

        DETECTOR = RecordedLandmarks(args.record_landmarks, detector=default_detector())
    deadline = T0 + args.max_seconds
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, shares, memory, notes = [], [], [], []
    if args.landmarks:
        notes.append("Face landmarks replayed from a dlib run on another machine (--landmarks): dlib is not "
                     "installed on the GPU machine, so the preprocess column leaves out dlib's detection time.")

    def log(msg):
        notes.append(msg)
        print(msg, flush=True)

    def write():
        out.write_text(_table(args, rows, shares, memory, notes, device))

    folder = official_folder(args.checkpoints)
    with tempfile.TemporaryDirectory() as d:
        if args.record_landmarks:  # every image the GPU run detects on: the portrait and its crops, each size
            from sadtalker_lib.pipeline import TalkingHeadPipeline

            for size in args.sizes:
                pipe = TalkingHeadPipeline.from_checkpoints(folder, size=size, progress=False, detector=DETECTOR)
                for mode in ("crop", "full"):
                    pipe.prepare_source(portrait_path(Path(d)), mode)
            DETECTOR.save()
            print(f"landmarks recorded: {args.record_landmarks} ({len(DETECTOR.items)} images)", flush=True)

        def section(label: str, measure) -> None:
            """Run one measurement unless the time budget is spent; a failure is logged, the rest still runs."""
            if time.perf_counter() > deadline:
                log(f"{label} skipped: time budget")
                return
            try:
                measure()
            except Exception as e:  # noqa: BLE001 - the other sections still run
                traceback.print_exc()
                log(f"{label} FAILED {type(e).__name__}: {e}")
            write()
            print(f"[{time.perf_counter() - T0:.0f} s] {label} done", flush=True)

        def memory_row(sec: float) -> None:
            m = outside_share(folder, 256, sec, Path(d), device)
            memory.append(dict(size=256, seconds=sec, frames=m["frames"], peak_gib=m["peak_gib"], total=m["total"]))

        for size in args.sizes:
            section(f"{size} px render rates", lambda size=size: rows.extend(render_rates(
                folder, size, args.frames, args.rounds, Path(d), device, set(args.skip), deadline, log,
                args.compile_reserve_s)))
        for size in args.sizes:
            section(f"{size} px full generate",
                    lambda size=size: shares.append(outside_share(folder, size, args.seconds, Path(d), device)))
        for sec in args.memory_seconds:
            section(f"memory row at {sec:g} s", lambda sec=sec: memory_row(sec))
    write()
    print(out.read_text())
    print(f"written {out} in {time.perf_counter() - T0:.0f} s")


if __name__ == "__main__":
    main()
