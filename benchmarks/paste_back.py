"""Full-mode paste-back speed: ``cv2.seamlessClone`` per frame (the official ``paste_pic``) against the fast solver
(``face.paste.SeamlessPaste``: per-video precomputation, then per frame a band-only right-hand side, a low-rank forward
spectrum and one inverse 2-D DST-I on a grid padded to cheap lengths); writes benchmarks/results/paste_back.md.

The portrait is skimage's astronaut (512 x 512) and the same picture upscaled to 1024 x 1024 (bicubic), cropped by
the real preprocessing (dlib landmarks) in every preprocess mode; only full and extfull paste back (crop, extcrop
and resize output the crop / the resized picture). The stand-in "rendered" frames are the 256 px source image with a
per-frame shift and brightness change (the paste cost does not depend on the content). Both solvers run on the same
frames in one process, alternately (ABBA order, so drift and load spikes hit both); per frame pair the ratio of the
two times; the table gives medians (ms per frame, wall and CPU time of all the process's threads; ratio = median of
the paired ratios), the one-off precomputation, and the difference to seamlessClone over the whole picture (max
|diff| in grey levels, share of differing channel values).

Usage: python benchmarks/paste_back.py [--frames N] [--rounds R] [--workers W] [--quick]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NO_PASTE = {"crop": "the crop itself", "extcrop": "the extended crop itself", "resize": "the resized picture"}


def test_frames(source: np.ndarray, size_wh: tuple[int, int], n: int) -> list[np.ndarray]:
    """n stand-in rendered frames [h, w, 3] uint8: the source, shifted 0..n-1 px and brightened 0..n-1 levels."""
    base = cv2.resize(source, size_wh)
    return [np.clip(np.roll(base, i, axis=1).astype(np.int16) + i, 0, 255).astype(np.uint8) for i in range(n)]


def _timed(fn, *args):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def measure(full: np.ndarray, info, extended: bool, frames: list[np.ndarray], rounds: int, workers: int) -> dict:
    from sadtalker_lib.face.paste import SeamlessPaste, paste_frame

    t0 = time.perf_counter()
    fast = SeamlessPaste(full, info, extended=extended, workers=workers)
    init_ms = 1e3 * (time.perf_counter() - t0)

    def official(f):
        return paste_frame(f, full, info, extended=extended, solver="opencv")

    wall = {"cv": [], "fast": []}
    cpu = {"cv": [], "fast": []}
    max_diff, n_diff, n_values = 0, 0, 0
    for r in range(rounds):
        for i, f in enumerate(frames):
            order = ("cv", "fast") if (r + i) % 2 == 0 else ("fast", "cv")
            outs = {}
            for key in order:
                outs[key], w, c = _timed(official if key == "cv" else fast, f)
                wall[key].append(w)
                cpu[key].append(c)
            if r == 0:
                d = np.abs(outs["fast"].astype(np.int16) - outs["cv"].astype(np.int16))
                max_diff, n_diff, n_values = max(max_diff, int(d.max())), n_diff + int((d > 0).sum()), n_values + d.size
    w_cv, w_fast, c_cv, c_fast = (np.array(v) for v in (wall["cv"], wall["fast"], cpu["cv"], cpu["fast"]))
    oy1, oy2, ox1, ox2 = fast.box
    return dict(box=f"{ox2 - ox1}x{oy2 - oy1}", grid="{}x{}".format(*fast.padded_shape[::-1]),
                cv_ms=1e3 * np.median(w_cv), fast_ms=1e3 * np.median(w_fast), ratio=float(np.median(w_cv / w_fast)),
                cv_cpu=1e3 * np.median(c_cv), fast_cpu=1e3 * np.median(c_fast),
                cpu_ratio=float(np.median(c_cv / np.maximum(c_fast, 1e-6))),
                init_ms=init_ms, max_diff=max_diff, share=n_diff / n_values, pairs=len(w_cv))


def paste_table(sizes=(512, 1024), n_frames: int = 10, rounds: int = 4, workers: int = 1) -> str:
    import skimage.data

    from sadtalker_lib.face.align import PREPROCESS_MODES, prepare_portrait
    from sadtalker_lib.face.detect import default_detector
    from sadtalker_lib.face.paste import render_frame_size

    rows = []
    img = skimage.data.astronaut()
    for size in sizes:
        full = img if size == img.shape[0] else cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
        for mode in PREPROCESS_MODES:
            if mode in NO_PASTE:
                rows.append((size, mode, None))
                continue
            prepared = prepare_portrait(full, mode=mode, size=256, detector=default_detector())
            frames = test_frames(prepared.source, render_frame_size(prepared.crop_info), n_frames)
            rows.append((size, mode, measure(full, prepared.crop_info, mode == "extfull", frames, rounds, workers)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"### Seamless paste-back, ms per frame: cv2.seamlessClone (official paste_pic) vs SeamlessPaste "
             f"(solver='fast', {workers} scipy.fft worker{'s' * (workers > 1)}); {n_frames} frames x {rounds} "
             f"rounds, alternating; cv2 {cv2.__version__} ({cv2.getNumThreads()} OpenCV threads), "
             f"{os.cpu_count()} CPUs, load average {load:.1f} at the end", "",
             "Wall: elapsed time; CPU: CPU time of all the process's threads (steadier on a busy machine). "
             "Speed-up: median over the frame pairs of (cv2 time / fast time). Max abs diff and share: the fast "
             "result against cv2.seamlessClone's over the whole picture, uint8 grey levels per channel.", "",
             "| picture | mode | paste box | DST grid | cv2 wall / CPU ms | fast wall / CPU ms "
             "| speed-up wall / CPU | fast set-up ms (once per video) | max abs diff | differing values |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, mode, r in rows:
        if r is None:
            lines.append(f"| {size} | {mode} | no paste-back: the output is {NO_PASTE[mode]} | | | | | | | |")
            continue
        lines.append(f"| {size} | {mode} | {r['box']} | {r['grid']} | {r['cv_ms']:.1f} / {r['cv_cpu']:.1f} "
                     f"| {r['fast_ms']:.2f} / {r['fast_cpu']:.2f} | {r['ratio']:.1f}x / {r['cpu_ratio']:.1f}x "
                     f"| {r['init_ms']:.0f} | {r['max_diff']} | {100 * r['share']:.3f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="scipy.fft threads of the fast solver's DST")
    ap.add_argument("--quick", action="store_true", help="5 frames x 2 rounds")
    args = ap.parse_args(argv)
    frames, rounds = (5, 2) if args.quick else (args.frames, args.rounds)
    table = paste_table(n_frames=frames, rounds=rounds, workers=args.workers)
    print(table, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "paste_back.md"
    out.write_text("# Paste-back benchmark\n\n" + table + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
