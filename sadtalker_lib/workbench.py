"""The main job (`make main` / `sadtalker-lab main`): the whole workbench end to end, offline, on a CPU.

    1. corpus      the default corpus: eSpeak NG speech, viseme teacher, head-motion styles, blinks, a real
                   portrait animated by the default morphable model                      (data.corpus)
    2. train       coefficient regressor, ExpNet, PoseVAE, face-vid2vid + MappingNet at the CPU presets, and a
                   SyncNet for LSE; all saved in the official layout under models/        (train.*, metrics)
       (skipped for generation when official checkpoints are in ``checkpoints/``: they are used instead)
    3. generate    a real portrait (scikit-image's astronaut) + a sentence the corpus never said -> mp4
    4. evaluate    Table 1 metrics of the generated video against held-out corpus clips   (metrics.evaluate)
    5. report      ``runs/<date>/report.html``: video, coefficient plots, loss curves, metric tables

Every stage writes its outputs into the run folder as it finishes; if a stage fails, the report is still
written with the stages that ran and the error, so nothing finished is lost.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["MainConfig", "run_main"]

SENTENCE = "Hello! I am a portrait that learned to talk on this computer, from synthesized speech."


@dataclass
class MainConfig:
    """Sizes of the main job. Defaults finish in well under 20 minutes on a 2-core CPU; ``quick()`` is a smoke run."""

    seed: int = 0
    n_clips: int = 10  # default corpus clips (the last 2 are held out)
    clip_seconds: float = 4.0
    image_size: int = 128  # corpus frames and the trained renderer (px)
    regressor_steps: int = 150
    expnet_steps: int = 300  # the CPU preset of notebook 03
    posevae_steps: int = 200  # the CPU preset of notebook 04
    facevid2vid_steps: int = 250
    mapping_steps: int = 150
    syncnet_steps: int = 100
    generate_seconds: float | None = 4.0  # None: the whole sentence
    eval_max_frames: int = 100
    threads: int = 2

    @classmethod
    def quick(cls) -> "MainConfig":
        return cls(n_clips=4, clip_seconds=2.0, image_size=64, regressor_steps=20, expnet_steps=20, posevae_steps=20,
                   facevid2vid_steps=20, mapping_steps=20, syncnet_steps=10, generate_seconds=1.0, eval_max_frames=25)


@dataclass
class _Run:
    folder: Path
    stages: dict = field(default_factory=dict)  # name -> seconds
    notes: list = field(default_factory=list)
    histories: dict = field(default_factory=dict)  # name -> (TrainHistory, keys)
    summary: dict = field(default_factory=dict)


def _official_present(folder: Path) -> bool:
    from .official import OFFICIAL_NETWORKS, SAFETENSORS_FILE

    return ((folder / SAFETENSORS_FILE.format(size=256)).is_file()
            and (folder / OFFICIAL_NETWORKS["mapping_crop"].pth_file).is_file())


def _stage(run: _Run, name: str):
    class _Timer:
        def __enter__(self):
            print(f"== {name}", flush=True)
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            run.stages[name] = time.perf_counter() - self.t
            print(f"   {name}: {run.stages[name]:.0f} s", flush=True)
            return False

    return _Timer()


def _build_corpus(run: _Run, cfg: MainConfig) -> tuple[Path, list, list]:
    from .data.corpus import build_default_corpus, load_index

    corpus = run.folder / "corpus"
    build_default_corpus(corpus, n_clips=cfg.n_clips, seed=cfg.seed, size=cfg.image_size, max_seconds=cfg.clip_seconds)
    ids = [c["id"] for c in load_index(corpus)["clips"]]
    n_held = max(1, len(ids) // 5)
    return corpus, ids[:-n_held], ids[-n_held:]


def _train_models(run: _Run, cfg: MainConfig, corpus: Path, train_ids, held_ids) -> Path:
    """Stage 2: every network of the inference path trained here, saved into ``models/`` (official layout)."""
    import torch

    from .data.corpus import CorpusDataset
    from .official.registry import save_networks
    from .train.expnet import ExpNetTrainConfig, train_expnet
    from .data.frames import FaceRenderClips
    from .data.portraits import build_regressor_data, split_regressor_data
    from .train.facevid2vid import FaceVid2VidTrainConfig, train_facevid2vid
    from .train.mapping import MappingTrainConfig, train_mapping
    from .train.posevae import PoseVAETrainConfig, train_posevae
    from .train.regressor import RegressorTrainConfig, save_regressor, train_regressor
    from .data.windows import exp_windows_from_dataset, pose_windows_from_dataset

    models = run.folder / "models"
    train_dir = run.folder / "training"
    with _stage(run, "train regressor"):
        data = build_regressor_data(None, seed=cfg.seed)  # the astronaut, augmented, fitted
        tr, ho = split_regressor_data(data, 0.2, seed=cfg.seed)
        reg = train_regressor(tr, ho, RegressorTrainConfig.cpu(steps=cfg.regressor_steps, seed=cfg.seed),
                              train_dir / "regressor")
        run.histories["regressor"] = (reg.history, ["landmark_px"])
        if reg.before is not None and reg.after is not None:
            run.summary["regressor held-out landmark error (px @224)"] = (reg.before.landmark_px, reg.after.landmark_px)

    def windows(window: int, ids, builder):
        return builder(CorpusDataset(corpus, window=window, clips=ids))

    with _stage(run, "train ExpNet"):
        exp_cfg = ExpNetTrainConfig.cpu(steps=cfg.expnet_steps, seed=cfg.seed)
        exp = train_expnet(windows(exp_cfg.window, train_ids, exp_windows_from_dataset),
                           windows(exp_cfg.window, held_ids, exp_windows_from_dataset), exp_cfg, train_dir / "expnet")
        run.histories["ExpNet"] = (exp.history, ["loss", "distill"])
        run.summary["ExpNet held-out loss"] = (exp.history.first("loss"), exp.history.last("loss"))
    with _stage(run, "train PoseVAE"):
        pose_cfg = PoseVAETrainConfig.cpu(steps=cfg.posevae_steps, seed=cfg.seed)
        span = pose_cfg.window + 1  # the reference frame rho_0 and the window after it
        pose = train_posevae(windows(span, train_ids, pose_windows_from_dataset),
                             windows(span, held_ids, pose_windows_from_dataset), pose_cfg,
                             train_dir / "posevae")
        run.histories["PoseVAE"] = (pose.history, ["loss", "mse"])
        run.summary["PoseVAE held-out loss"] = (pose.history.first("loss"), pose.history.last("loss"))
    with _stage(run, "train face-vid2vid + MappingNet"):
        tr_clips = FaceRenderClips.from_corpus(corpus, train_ids, image_size=cfg.image_size)
        ho_clips = FaceRenderClips.from_corpus(corpus, held_ids, image_size=cfg.image_size)
        fv_cfg = FaceVid2VidTrainConfig.cpu(steps=cfg.facevid2vid_steps, seed=cfg.seed, image_size=cfg.image_size)
        fv = train_facevid2vid(tr_clips, ho_clips, fv_cfg, train_dir / "facevid2vid")
        run.histories["face-vid2vid"] = (fv.history, ["loss", "image_l1"])
        run.summary["face-vid2vid held-out image L1"] = (fv.history.first("image_l1"), fv.history.last("image_l1"))
        map_cfg = MappingTrainConfig.cpu(steps=cfg.mapping_steps, seed=cfg.seed)
        mp = train_mapping(tr_clips, ho_clips, fv.renderer, map_cfg, train_dir / "mapping")
        run.histories["MappingNet"] = (mp.history, ["keypoint_l1", "image_l1"])
        run.summary["MappingNet held-out keypoint L1 (Eq. 14)"] = (mp.history.first("keypoint_l1"),
                                                                     mp.history.last("keypoint_l1"))
    nets = {"audio2exp": exp.model, "audio2pose": pose.model, "kp_extractor": fv.renderer.kp_extractor,
            "generator": fv.renderer.generator, "mapping_crop": mp.mapping}
    configs = {n: m.config for n, m in nets.items()}
    torch.manual_seed(cfg.seed)
    save_networks(models, nets, configs, size=cfg.image_size, note="trained here by sadtalker-lab main")
    save_regressor(models, reg.model, size=cfg.image_size)
    return models


def _generate(run: _Run, cfg: MainConfig, models: Path, size: int):
    import skimage.data

    from .data.tts import synthesize
    from .pipeline import TalkingHeadPipeline

    speech = synthesize(SENTENCE, voice="en")
    samples = speech.samples
    if cfg.generate_seconds is not None:
        samples = samples[: int(cfg.generate_seconds * speech.sample_rate)]
    pipe = TalkingHeadPipeline.from_checkpoints(models, size=size)
    result = pipe.generate(skimage.data.astronaut(), (samples, speech.sample_rate), out=run.folder / "talking_head.mp4",
                           seed=cfg.seed, keep_frames=True)
    run.notes.append(f"generated with {pipe.name}")
    return result


def _evaluate(run: _Run, cfg: MainConfig, corpus: Path, held_ids, video: Path):
    import skimage.data

    from sadtalker_lib.train.syncnet import train_syncnet_on_corpus
    from sadtalker_lib.metrics.tables import evaluate

    from .data.corpus import load_clip
    from .video import write_video

    syncnet_path, _ = train_syncnet_on_corpus(corpus, run.folder / "models" / "syncnet_trained_here.pt",
                                              steps=cfg.syncnet_steps, seed=cfg.seed)
    real = []
    for cid in held_ids:
        clip = load_clip(corpus, cid)
        real.append(write_video(run.folder / "eval" / f"real_{cid}.mp4", clip["frames"], audio=(clip["audio"], 16000)))
    df = evaluate({"SadTalker Lab (trained here)": [video]}, real=real, sources=[skimage.data.astronaut()],
                  real_row="Held-out corpus clips (default corpus: rendered, not real video)",
                  syncnet=syncnet_path, max_frames=cfg.eval_max_frames, csim_step=5, cpbd_step=2)
    return df


def _plot_histories(report, run: _Run) -> None:
    import matplotlib.pyplot as plt

    items = [(name, h, key) for name, (h, keys) in run.histories.items() for key in keys[:1]]
    if not items:
        return
    fig, axes = plt.subplots(1, len(items), figsize=(3.6 * len(items), 3))
    axes = np.atleast_1d(axes)
    for ax, (name, h, key) in zip(axes, items):
        for split, style in (("train", "-"), ("heldout", "o-")):
            s, v = h.series(key, split)
            if len(s):
                ax.plot(s, v, style, label=split, alpha=0.6 if split == "train" else 1)
        ax.set_title(f"{name}: {key}", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    report.figure(fig, "Loss curves of the models trained in this run (train and held-out).")


def _plot_result(report, result) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    ax[0].imshow(result.source.image)
    ax[0].set_title("source crop")
    ax[0].axis("off")
    ax[1].plot(result.exp[:, :8])
    ax[1].set_title("expression coefficients (first 8 of 64)")
    ax[1].set_xlabel("frame")
    ax[2].plot(np.degrees(result.pose[:, :3]))
    ax[2].legend(["pitch", "yaw", "roll"], fontsize=7)
    ax[2].set_title("head pose (degrees)")
    ax[2].set_xlabel("frame")
    fig.tight_layout()
    report.figure(fig, "What drove the face: ExpNet expression and PoseVAE head pose per frame.")
    idx = np.linspace(0, result.num_frames - 1, 6).astype(int)
    fig, ax = plt.subplots(1, 6, figsize=(14, 2.6))
    for a, i in zip(ax, idx):
        a.imshow(result.frames[i])
        a.set_title(f"frame {i}", fontsize=8)
        a.axis("off")
    report.figure(fig, "Frames of the generated video.")


def run_main(out_dir: str | os.PathLike = "runs", checkpoints: str | os.PathLike = "checkpoints", quick: bool = False,
             config: MainConfig | None = None) -> Path:
    """Run the main job; returns the path of ``report.html``."""
    import pandas as pd
    import torch

    from .report import Report
    from .train.loop import seed_everything

    cfg = config or (MainConfig.quick() if quick else MainConfig())
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    folder = Path(out_dir) / datetime.now().strftime("%Y-%m-%d_%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    latest = Path(out_dir) / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(folder.name)
    run = _Run(folder)
    report = Report(folder, title="SadTalker Lab — main job")
    official = _official_present(Path(checkpoints))
    t0 = time.perf_counter()
    error = None
    result = df = None
    try:
        with _stage(run, "corpus"):
            corpus, train_ids, held_ids = _build_corpus(run, cfg)
        if official:
            run.notes.append(f"official checkpoints found in {checkpoints}: generating with them (256 px); "
                             "the project's own models are not trained in this run")
            models, size = Path(checkpoints), 256
        else:
            models, size = _train_models(run, cfg, corpus, train_ids, held_ids), cfg.image_size
        with _stage(run, "generate"):
            result = _generate(run, cfg, models, size)
        with _stage(run, "evaluate"):
            df = _evaluate(run, cfg, corpus, held_ids, result.video_path)
    except Exception as e:  # keep what finished; the report says what failed
        error = "".join(traceback.format_exception(e))
        print(error, flush=True)
    total = time.perf_counter() - t0

    report.text("The whole workbench, offline on this machine: default corpus → models trained here (or the "
                "official checkpoints when present) → a talking-head video of a real portrait from synthesized "
                "speech → the paper's metrics.")
    for n in run.notes:
        report.text(n, note=True)
    if error:
        report.heading("A stage failed")
        report.text("The stages before it finished and their outputs are in this folder.", note=True)
        report.code(error)
    if result is not None:
        report.heading("Generated video")
        report.video(result.video_path, f"{result.num_frames} frames at 25 fps with the input speech: “{SENTENCE}”")
        _plot_result(report, result)
    if df is not None:
        from sadtalker_lib.metrics.tables import paper_table1, table_notes

        report.heading("Evaluation (Table 1 layout)")
        report.table(df, "Our run. Columns computed with an offline stand-in say so in brackets; n/a cells have a "
                         "reason below. Not comparable in value with the paper (other data, models trained for "
                         "minutes).")
        notes = table_notes(df)
        if len(notes):
            report.table(notes, "Why cells are n/a")
        report.table(paper_table1(), "The paper's Table 1 (HDTF), for reference")
    if run.histories:
        report.heading("Training")
        _plot_histories(report, run)
        rows = [{"quantity": k, "before": b, "after": a, "ratio before/after": (b / a if a else float("nan"))}
                for k, (b, a) in run.summary.items()]
        if rows:
            report.table(pd.DataFrame(rows).set_index("quantity"), "Held-out figures before and after training")
    report.heading("Timings")
    report.table(pd.DataFrame({"seconds": {**run.stages, "total": total}}), "Wall-clock seconds per stage")
    path = report.write()
    print(f"report: {path} ({total / 60:.1f} min)")
    if error:
        raise RuntimeError(f"the main job failed; partial report at {path}")
    return path
