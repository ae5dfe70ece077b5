"""The ``sadtalker-lab`` command.

    sadtalker-lab generate --image IMG --audio AUDIO --checkpoints DIR --out OUT.mp4 [official flags]
    sadtalker-lab main [--out-dir runs/] [--checkpoints checkpoints/]    the end-to-end workbench job
    sadtalker-lab materialize-reference OUT_DIR                          seeded official-format checkpoints
    sadtalker-lab corpus build --default --out DIR [--clips N]           the default (synthetic) corpus
    sadtalker-lab corpus build --videos DIR --out DIR [--max-seconds S] [--workers N] [--people CSV]
        a corpus from real talking-face videos (``data.corpus.build_video_corpus``)
    sadtalker-lab evaluate VIDEO [--reference IMAGE] --json OUT       Table-1 metrics + lip-sync offset of a video
    sadtalker-lab generate-batch jobs.csv --out DIR [--checkpoints DIR]  one mp4 per CSV row (``batch``); also
        under ``torchrun --nproc_per_node N -m sadtalker_lib.cli generate-batch ...``: rows shared out, resumable
    sadtalker-lab train STAGE --corpus DIR --preset tiny|cpu|paper --out DIR [--steps N] [--resume]
        STAGE: regressor, expnet, lipreader, posevae, facevid2vid, mapping, syncnet (``train.loop.STAGES``); the
        final weights land in --out in the official layout. The same command runs on several processes:
        ``torchrun --nproc_per_node N -m sadtalker_lib.cli train ...`` or ``accelerate launch -m sadtalker_lib.cli
        train ...`` (gloo on CPUs, NCCL on GPUs; --batch-size is the global batch, split over the processes).

The ``generate`` flags mirror the official ``inference.py`` ones (``--preprocess``, ``--still``,
``--pose_style``, ``--expression_scale``, ``--ref_eyeblink``, ``--ref_pose``, ``--input_yaw/pitch/roll``,
``--size``, ``--batch_size``, ``--enhancer``, ``--old_version``, ``--cpu`` / ``--device``).
"""
from __future__ import annotations

import argparse
import sys


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="portrait + speech -> talking-head mp4")
    p.add_argument("--image", "--source_image", dest="image", required=True, help="portrait image")
    p.add_argument("--audio", "--driven_audio", dest="audio", required=True, help="speech (wav/mp3/m4a/flac, any rate)")
    p.add_argument("--checkpoints", "--checkpoint_dir", dest="checkpoints", default="checkpoints",
                   help="folder with the official (or trained-here) checkpoint files")
    p.add_argument("--out", default="result.mp4", help="output mp4 path")
    p.add_argument("--preprocess", default="crop", choices=["crop", "extcrop", "resize", "full", "extfull"])
    p.add_argument("--still", action="store_true", help="keep the source head pose (official --still)")
    p.add_argument("--pose_style", type=int, default=0, help="PoseVAE style class 0..45")
    p.add_argument("--expression_scale", type=float, default=1.0)
    p.add_argument("--ref_eyeblink", default=None, help="video whose expression drives eyes / blinks")
    p.add_argument("--ref_pose", default=None, help="video whose head motion is added to the generated pose")
    p.add_argument("--input_yaw", nargs="+", type=int, default=None, help="yaw degrees, e.g. 0 20 -10")
    p.add_argument("--input_pitch", nargs="+", type=int, default=None)
    p.add_argument("--input_roll", nargs="+", type=int, default=None)
    p.add_argument("--size", type=int, default=256, choices=[256, 512])
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--enhancer", default=None, choices=[None, "gfpgan"], help="optional face enhancement")
    p.add_argument("--old_version", action="store_true", help="read the old .pth files, not the safetensors")
    p.add_argument("--seed", type=int, default=None, help="seed for the pose noise and the blinks")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--cpu", action="store_true", help="same as --device cpu (official flag)")
    p.add_argument("--paste_solver", default=None, choices=["opencv", "fast"],
                   help="full modes: opencv = official seamlessClone; fast = same result within 1 grey level, "
                        ">= 5x faster (default: fast with --precision fast, else opencv)")
    p.add_argument("--precision", default="exact", choices=["exact", "fast"],
                   help="renderer arithmetic: exact float32 (default) or fast (fused SPADE decoder, and 16-bit convs "
                        "on GPUs and on CPUs with native bfloat16; >= 35 dB vs exact)")


def _say_precision(precision: str, device: str) -> None:
    """Print what ``--precision fast`` does on this machine (it depends on the CPU)."""
    if precision != "fast":
        return
    from .precision import fast_techniques, native_bf16_cpu

    techniques = " + ".join(fast_techniques(device))
    note = "" if device.startswith("cuda") or native_bf16_cpu() else (
        " (this CPU has no native bfloat16 -- no AVX512-BF16 / AMX --, where 16-bit convs would be far slower "
        "than float32: float32 techniques only, Winograd / FFT convolutions, the same picture as exact)")
    print(f"--precision fast on {device}: {techniques}{note}")


def _generate(args) -> int:
    from .pipeline import TalkingHeadPipeline

    device = "cpu" if args.cpu else args.device
    _say_precision(args.precision, device)
    pipe = TalkingHeadPipeline.from_checkpoints(args.checkpoints, size=args.size, device=device,
                                                old_version=args.old_version, preprocess=args.preprocess,
                                                precision=args.precision)
    result = pipe.generate(
        args.image, args.audio, out=args.out, preprocess=args.preprocess, still=args.still,
        pose_style=args.pose_style, expression_scale=args.expression_scale, ref_eyeblink=args.ref_eyeblink,
        ref_pose=args.ref_pose, input_yaw=args.input_yaw, input_pitch=args.input_pitch,
        input_roll=args.input_roll, batch_size=args.batch_size, enhancer=args.enhancer, seed=args.seed,
        paste_solver=args.paste_solver,
    )
    print(f"wrote {result.video_path} ({result.num_frames} frames, {result.num_frames / 25:.2f} s)")
    return 0


def _add_corpus_and_train(sub) -> None:
    c = sub.add_parser("corpus", help="build a training corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True)
    b = csub.add_parser("build", help="write a corpus folder")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--default", action="store_true",
                     help="the default corpus (eSpeak NG speech, synthetic motion, rendered portraits)")
    src.add_argument("--videos", default=None, metavar="DIR",
                     help="a corpus from a folder of real talking-face videos (build_video_corpus)")
    b.add_argument("--out", required=True, help="corpus folder")
    b.add_argument("--clips", type=int, default=8, help="number of clips")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--size", type=int, default=128, help="frame size in px")
    b.add_argument("--max-seconds", type=float, default=None,
                   help="crop clips to this length (--videos: default 10; 0 = whole videos)")
    b.add_argument("--workers", type=int, default=2, help="--videos: clip processes")
    b.add_argument("--people", default=None, help="--videos: file,person CSV (default: DIR/people.csv if present)")
    b.add_argument("--no-fit", action="store_true", help="--videos: skip the morphable-model fit (zeros)")
    b.add_argument("--fit-iterations", type=int, default=None, help="--videos: Adam steps of the fit")
    b.add_argument("--lip-iterations", type=int, default=100, help="--videos: Adam steps of the lip-only fit")
    b.add_argument("--heldout-fraction", type=float, default=0.25, help="--videos: identities held out")
    t = sub.add_parser("train", help="train one stage on a corpus (single process, torchrun or accelerate launch)")
    t.add_argument("stage", help="regressor, expnet, lipreader, posevae, facevid2vid, mapping or syncnet")
    t.add_argument("--corpus", required=True, help="corpus folder (sadtalker-lab corpus build)")
    t.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    t.add_argument("--out", required=True, help="run folder: log, checkpoints, final official-layout weights")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the preset's)")
    t.add_argument("--batch-size", type=int, default=None, help="GLOBAL batch (over all processes)")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    t.add_argument("--mixed-precision", default=None, choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--renderer", default=None,
                   help="mapping only: the folder of a trained face-vid2vid (the --out of 'train facevid2vid')")
    t.add_argument("--image-size", type=int, default=None,
                   help="facevid2vid only: frame side in px (the cpu preset's 64; 128 moves new faces more at ~3x "
                        "the time; the mapping stage takes its renderer's)")
    t.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a killed run


def _corpus(args) -> int:
    from .data.corpus import build_default_corpus

    if args.videos is not None:
        return _video_corpus(args)

    index = build_default_corpus(args.out, n_clips=args.clips, seed=args.seed, size=args.size,
                                 max_seconds=args.max_seconds)
    print(f"wrote {index}")
    return 0


def _video_corpus(args) -> int:
    import json

    from .data.corpus import build_video_corpus

    seconds = 10.0 if args.max_seconds is None else (None if args.max_seconds <= 0 else args.max_seconds)
    path = build_video_corpus(args.videos, args.out, size=args.size, max_seconds=seconds, fit_coeffs=not args.no_fit,
                              fit_iterations=args.fit_iterations, lip_iterations=args.lip_iterations,
                              workers=args.workers, people_csv=args.people,
                              heldout_fraction=args.heldout_fraction, split_seed=args.seed)
    index = json.loads(path.read_text())
    split = index.get("split") or {}
    print(f"wrote {path}: {len(index['clips'])} clips, {len(index['identities'])} people, "
          f"{len(index['skipped'])} skipped; split {len(split.get('train', []))} train / "
          f"{len(split.get('heldout', []))} held-out clips")
    for s in index["skipped"]:
        print(f"  skipped {s['file']}: {s['reason']}")
    return 0


def _train(args) -> int:
    from .train.loop import NonFiniteLoss, build_cli_stage, run

    overrides = {k: v for k, v in dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                       grad_accum=args.grad_accum, mixed_precision=args.mixed_precision,
                                       num_threads=args.threads).items() if v is not None}
    if args.cpu:
        overrides["device"] = "cpu"
    if args.renderer is not None:
        if args.stage != "mapping":
            raise ValueError("--renderer is for 'train mapping' only (the frozen face-vid2vid it learns against)")
        overrides["renderer"] = args.renderer
    if args.image_size is not None:
        if args.stage != "facevid2vid":
            raise ValueError("--image-size is for 'train facevid2vid' only (the mapping stage renders at its "
                             "renderer's size)")
        overrides["image_size"] = args.image_size
    stage = build_cli_stage(args.stage, args.corpus, args.preset, **overrides)
    try:
        result = run(stage, args.out, resume=args.resume, stop_after=args.stop_after)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if result.final is not None:
        print(f"{args.stage}: {result.step} steps; weights: {result.final}")
    return 0


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="Table-1 metrics of a video with its own audio track (JSON)")
    e.add_argument("video", help="the video (a silent one takes the .wav of the same name)")
    e.add_argument("--reference", default=None, help="source portrait for CSIM (default: the first frame)")
    e.add_argument("--json", dest="json_out", required=True, help="where to write the metrics")
    e.add_argument("--max-seconds", type=float, default=None, help="score only the start of the video")


def _evaluate(args) -> int:
    import json

    from .metrics.evaluate import evaluate_video

    out = evaluate_video(args.video, reference=args.reference, json_out=args.json_out, max_seconds=args.max_seconds)
    print(json.dumps({"metrics": out["metrics"], "lip_sync": out["lip_sync"]}, indent=2))
    print(f"wrote {args.json_out}")
    return 0


def _add_generate_batch(sub) -> None:
    g = sub.add_parser("generate-batch", help="one mp4 per CSV row, sharded over torchrun / accelerate processes")
    g.add_argument("jobs", help="jobs.csv: image, audio, optional id and generate options (sadtalker_lib.batch)")
    g.add_argument("--out", required=True, help="output folder: <id>.mp4, records/, summary.csv")
    g.add_argument("--checkpoints", "--checkpoint_dir", dest="checkpoints", default="checkpoints")
    g.add_argument("--size", type=int, default=256, help="renderer size: 256 or 512 (official); trained-here: theirs")
    g.add_argument("--old_version", action="store_true", help="read the old .pth files, not the safetensors")
    g.add_argument("--device", default="auto", help="auto (each process's own device), cpu or cuda")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    g.add_argument("--precision", default="exact", choices=["exact", "fast"], help="as for generate")


def _generate_batch(args) -> int:
    from .batch import run_batch

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    s = run_batch(args.jobs, args.out, checkpoints=args.checkpoints, size=args.size, device=args.device,
                  old_version=args.old_version, precision=args.precision)
    return 1 if s.rows_failed else 0  # only the main process knows (the others return 0 after the last barrier)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sadtalker-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    m = sub.add_parser("main", help="the end-to-end workbench job: corpus, training, generation, evaluation, report")
    m.add_argument("--out-dir", default="runs")
    m.add_argument("--checkpoints", default="checkpoints")
    m.add_argument("--quick", action="store_true", help="smallest settings (a smoke run)")
    m.add_argument("--renderer-size", type=int, default=None,
                   help="face-vid2vid + MappingNet frame size in px (default 64). 128, the corpus' own size, "
                        "makes the job about 45 min on 2 cores instead of 15; its face lip-synced in more "
                        "head-motion draws "
                        "(results/facerender-motion-cpu-default-corpus.md, section 32)")
    r = sub.add_parser("materialize-reference", help="write seeded official-format checkpoints (needs ../shared)")
    r.add_argument("out_dir")
    _add_corpus_and_train(sub)
    _add_evaluate(sub)
    _add_generate_batch(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "main":
            from .workbench import run_main

            report = run_main(out_dir=args.out_dir, checkpoints=args.checkpoints, quick=args.quick,
                              renderer_size=args.renderer_size)
            print(f"report: {report}")
            return 0
        if args.command == "corpus":
            return _corpus(args)
        if args.command == "train":
            return _train(args)
        if args.command == "generate-batch":
            return _generate_batch(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "materialize-reference":
            from .paths import reference_checkpoints

            print(f"reference checkpoints: {reference_checkpoints(args.out_dir)}")
            return 0
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
