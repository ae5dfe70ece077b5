"""The main job (`make main` / `sadtalker-lab main`): the whole workbench end to end, offline, on a CPU.

    1. corpus      the default corpus: eSpeak NG speech, viseme teacher, head-motion styles, blinks, the two real
                   photos as 16 face-model identities, animated by the default morphable model (data.corpus)
    2. train       coefficient regressor, ExpNet, PoseVAE, face-vid2vid + MappingNet at the CPU presets (saved in
                   the official layout under models/), and the offline lip-sync stand-in for LSE when no
                   syncnet_v2.model exists (cached); the renderer in a second process      (train.*, metrics)
       (skipped for generation when official checkpoints are in ``checkpoints/``: they are used instead)
    3. generate    a real portrait (scikit-image's astronaut) + a sentence the corpus never said -> mp4
    4. evaluate    Table 1 metrics of the generated video against held-out corpus clips   (metrics.evaluate);
                   issue 14's lip-sync check of it, and of the same coefficients rendered without a network
                   (the talking chain's reference renderer)                     (train.facerender_eval)
    5. report      ``runs/<date>/report.html``: video, coefficient plots, loss curves, metric tables

Every stage writes its outputs into the run folder as it finishes; if a stage fails, the report is still
written with the stages that ran and the error, so nothing finished is lost.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["MainConfig", "run_main", "lip_sync_check", "trained_models", "SYNC_CHECK_SHIFT_FRAMES"]

from .train.facerender_eval import REFERENCE, SYNC_CHECK_SHIFT_FRAMES, lip_sync_check  # noqa: E402  (re-exported)
HELDOUT_FRACTION = 0.25  # share of the corpus' people held out (whole identities)
TRAINING_NOTES = ("perceptual", "generator_keypoints")  # heldout.json split entries shown under the baselines table
REGRESSOR_TITLE = "coefficient regressor"  # its loss curve and held-out table in the report
SENTENCE = "Hello! I am a portrait that learned to talk on this computer, from synthesized speech."


@dataclass
class MainConfig:
    """Sizes of the main job. Defaults finish in well under 20 minutes on a 2-core CPU; ``quick()`` is a smoke run."""

    seed: int = 0
    n_clips: int = 36  # default corpus clips (10 clips left ExpNet at 0.52x, r 0.68)
    identity_variants: int = 7  # face-model variants per photo (`Phenomena.identity_variants`): 16 people, 4 held
    # out; the corpus default (2: 6 people) moved the faces less (results/facerender-motion-... sections 16-17)
    clip_seconds: float = 4.0
    image_size: int = 128  # corpus frames and the trained renderer (px)
    regressor_steps: int = 150
    expnet_steps: int = 600  # the CPU preset (train/expnet.py)
    expnet_eval_every: int = 100  # held-out evaluations (~5 s each) every 100 steps, not the preset's 50
    posevae_steps: int = 300  # the CPU preset's 2000 would take ~11 min; 300 frozen-encoder steps cost what 200 did
    renderer_size: int = 64  # face-vid2vid + MappingNet frames (px): the renderer's CPU preset size
    facevid2vid_steps: int = 250  # the CPU preset's 800 move faces better (results/facerender-motion-... section
    # 34: 0.68x copy-source over eight seeds; 250 steps: 0.76x) but would add ~10 min to the second process
    mapping_steps: int = 300  # the CPU preset (train/mapping.py)
    generate_seconds: float | None = 4.0  # None: the whole sentence
    eval_max_frames: int = 100
    threads: int = 2  # torch threads of generation and evaluation
    second_process: bool = True  # face-vid2vid + MappingNet beside the other stages

    def __post_init__(self):
        from .train.facevid2vid import FRAME_MULTIPLE

        step = FRAME_MULTIPLE
        if self.renderer_size % step or not step <= self.renderer_size <= self.image_size:
            raise ValueError(f"renderer_size {self.renderer_size} px: use a multiple of {step} up to the corpus' "
                             f"image_size ({self.image_size} px), e.g. 64 (the default) or 128")

    @classmethod
    def quick(cls) -> "MainConfig":
        return cls(n_clips=4, clip_seconds=2.0, image_size=64, renderer_size=64, regressor_steps=20, expnet_steps=20,
                   posevae_steps=20, facevid2vid_steps=20, mapping_steps=20, generate_seconds=1.0, eval_max_frames=25)


@dataclass
class _Run:
    folder: Path
    stages: dict = field(default_factory=dict)  # name -> seconds
    notes: list = field(default_factory=list)
    histories: dict = field(default_factory=dict)  # name -> (TrainHistory, keys)
    heldout: dict = field(default_factory=dict)  # title -> HeldoutReport (trained vs trivial baselines)
    lip_sync: dict = field(default_factory=dict)  # row -> lip_sync summary (offset, LSE-C, LSE-D, source)
    chain: object = None  # train.facerender_eval.TalkingChain of the generated video
    generated: tuple = ()  # (pipeline, 16 kHz speech samples) of the generated video
    scorer: object = None  # the lip-sync model of _evaluate (metrics.lipsync)
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
    from .data.corpus import build_default_corpus
    from .data.corpus.splits import identity_split

    corpus = run.folder / "corpus"
    build_default_corpus(corpus, n_clips=cfg.n_clips, seed=cfg.seed, size=cfg.image_size, max_seconds=cfg.clip_seconds,
                         phenomena={"identity_variants": cfg.identity_variants})
    split = identity_split(corpus, HELDOUT_FRACTION, seed=cfg.seed)
    people = ", ".join(map(str, split.heldout_identities))
    run.notes.append(f"corpus split: {split.describe()} (held-out people: {people})")
    return corpus, split.train, split.heldout


def _train_stage(run: _Run, name: str, corpus: Path, out: Path, title: str, **overrides):
    """Train one stage exactly as ``sadtalker-lab train NAME --preset cpu`` does (identity-disjoint held-out
    people, ``heldout.json`` with the trivial baselines); its table goes into the report. Returns the stage."""
    from .train.heldout import HELDOUT_FILE, read_heldout
    from .train.loop import build_cli_stage, run as run_stage

    stage = build_cli_stage(name, corpus, "cpu", **overrides)
    res = run_stage(stage, out)
    run.histories[title] = (res.history, ["loss"])
    if (out / HELDOUT_FILE).is_file():
        run.heldout[title] = read_heldout(out)
    return stage


def _train_regressor(run: _Run, cfg: MainConfig, corpus: Path, train_dir: Path):
    """The coefficient regressor as ``sadtalker-lab train regressor`` trains it -> the trained network."""
    with _stage(run, "train regressor"):
        return _train_stage(run, "regressor", corpus, train_dir / "regressor", REGRESSOR_TITLE,
                            steps=cfg.regressor_steps, seed=cfg.seed).model


def _train_renderer(folder: str, corpus: str, cfg: MainConfig, with_regressor: bool = False) -> dict:
    """face-vid2vid + MappingNet (after the coefficient regressor when ``with_regressor``). Runs in the second
    process of stage 2 (``cfg.second_process``), or in this one. Returns the stage times, histories, held-out
    reports and the trained networks."""
    run = _Run(Path(folder))
    train_dir = run.folder / "training"
    regressor = _train_regressor(run, cfg, Path(corpus), train_dir) if with_regressor else None
    with _stage(run, "train face-vid2vid + MappingNet"):  # as `sadtalker-lab train facevid2vid / mapping`
        fv_dir = train_dir / "facevid2vid"
        fv = _train_stage(run, "facevid2vid", Path(corpus), fv_dir, "face-vid2vid", steps=cfg.facevid2vid_steps,
                          seed=cfg.seed, image_size=cfg.renderer_size)
        mp = _train_stage(run, "mapping", Path(corpus), train_dir / "mapping", "MappingNet", renderer=fv_dir,
                          steps=cfg.mapping_steps, seed=cfg.seed)
        run.histories["face-vid2vid"] = (run.histories["face-vid2vid"][0], ["image_l1"])
        run.histories["MappingNet"] = (run.histories["MappingNet"][0], ["keypoint_l1"])
    return {"stages": run.stages, "histories": run.histories, "heldout": run.heldout, "regressor": regressor,
            "nets": {"kp_extractor": fv.nets.kp_extractor, "generator": fv.nets.generator,
                     "mapping_crop": mp.mapping}}


def _train_models(run: _Run, cfg: MainConfig, corpus: Path, train_ids, held_ids) -> Path:
    """Stage 2: every network of the inference path trained here, saved into ``models/`` (official layout).

    The training presets run one torch thread each, so with ``cfg.second_process`` face-vid2vid + MappingNet
    (:func:`_train_renderer`) train in a second process (its output in ``training/second_process.log``) while this
    one trains the regressor, ExpNet and PoseVAE, then the lip-sync model that :func:`_evaluate` uses (trained once
    and cached when no ``syncnet_v2.model`` is present). When that model is still to train (a fresh machine), this
    process has the longer path (session 25, 2-core AMD EPYC: regressor 80 s + ExpNet 366 s + PoseVAE 212 s + the
    lip-sync stand-in 391 s against face-vid2vid + MappingNet 802 s), so the second process trains the regressor
    first."""
    import torch

    from .metrics.lipsync import default_lip_sync_scorer, lip_sync_model_on_disk
    from .official.registry import save_networks
    from .side_process import SideProcess
    from .train.regressor import save_regressor

    models = run.folder / "models"
    train_dir = run.folder / "training"
    side = None
    regressor_beside = cfg.second_process and not lip_sync_model_on_disk()
    if cfg.second_process:
        side = SideProcess(_train_renderer, str(run.folder), str(corpus), cfg, regressor_beside,
                           log=train_dir / "second_process.log")
        what = "the coefficient regressor, " if regressor_beside else ""
        print(f"   {what}face-vid2vid + MappingNet train in a second process (output: {side.log})", flush=True)
    torch.set_num_threads(1)
    regressor = None
    try:
        if not regressor_beside:
            regressor = _train_regressor(run, cfg, corpus, train_dir)
        with _stage(run, "train ExpNet"):
            exp = _train_stage(run, "expnet", corpus, train_dir / "expnet", "ExpNet", steps=cfg.expnet_steps,
                               eval_every=cfg.expnet_eval_every, seed=cfg.seed)
        with _stage(run, "train PoseVAE"):
            pose = _train_stage(run, "posevae", corpus, train_dir / "posevae", "PoseVAE", steps=cfg.posevae_steps,
                                seed=cfg.seed)
        with _stage(run, "lip-sync model"):
            default_lip_sync_scorer()
    except BaseException:
        if side is not None:  # let it finish: its stages write their outputs into training/
            print(f"   waiting for the second process (output: {side.log})", flush=True)
            try:
                side.result()
            except Exception as e:  # noqa: BLE001 - the first error is the one raised
                print(e, flush=True)
        raise
    if side is not None:
        with _stage(run, "wait for the second process"):
            other = side.result()
        print(f"   second process: {', '.join(f'{k} {v:.0f} s' for k, v in other['stages'].items())}", flush=True)
    else:
        other = _train_renderer(str(run.folder), str(corpus), cfg)
    torch.set_num_threads(cfg.threads)
    tag = " [second process]" if side is not None else ""
    run.stages.update({f"{k}{tag}": v for k, v in other["stages"].items()})
    run.histories.update(other["histories"])
    run.heldout.update(other["heldout"])
    if regressor_beside:  # the report keeps the pipeline's order: the regressor's curves and table first
        regressor = other["regressor"]
        for d in (run.histories, run.heldout):
            items = sorted(d.items(), key=lambda item: item[0] != REGRESSOR_TITLE)  # stable: the rest keep theirs
            d.clear()
            d.update(items)
    nets = {"audio2exp": exp.model, "audio2pose": pose.model, **other["nets"]}
    configs = {n: m.config for n, m in nets.items()}
    torch.manual_seed(cfg.seed)
    save_networks(models, nets, configs, size=cfg.renderer_size, note="trained here by sadtalker-lab main")
    save_regressor(models, regressor, size=cfg.renderer_size)  # one checkpoint file: the size generation loads
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
    run.generated = (pipe, samples)
    return result


def _evaluate(run: _Run, cfg: MainConfig, corpus: Path, held_ids, video: Path):
    """Table 1 of the generated video beside held-out corpus clips, with the lip-sync model of
    ``metrics.lipsync`` (the real ``syncnet_v2.model`` when present, else the labelled offline stand-in, trained
    once and cached); plus the same video with its audio delayed by 8 frames (a sync check that can fail)."""
    import skimage.data

    from .data.corpus import load_clip
    from .metrics.lipsync import default_lip_sync_scorer
    from .metrics.tables import evaluate
    from .train.facerender_eval import lip_sync_rows
    from .video import write_video

    scorer = default_lip_sync_scorer()
    real = []
    for cid in held_ids[:3]:
        clip = load_clip(corpus, cid)
        real.append(write_video(run.folder / "eval" / f"heldout_{cid}.mp4", clip["frames"],
                                audio=(clip["audio"], 16000)))
    df = evaluate({"SadTalker Lab (trained here)": [video]}, real=real, sources=[skimage.data.astronaut()],
                  real_row="Held-out corpus clips (default corpus: rendered, not real video)",
                  syncnet=scorer, max_frames=cfg.eval_max_frames, csim_step=5, cpbd_step=2)
    run.lip_sync.update(lip_sync_rows(scorer, video, max_frames=cfg.eval_max_frames))
    run.scorer = scorer
    return df


def _talking_chain(run: _Run, result, cfg: MainConfig):
    """Where the mouth of the generated video stops following the speech: ExpNet -> MappingNet -> renderer
    (``train.facerender_eval.talking_chain``; the generated video's lip-sync rows come from :func:`_evaluate`, the
    reference renderer's are added here)."""
    from .train.facerender_eval import reference_lip_sync_rows, talking_chain

    pipe, samples = run.generated
    chain = talking_chain(pipe, result, samples)
    if run.scorer is not None:
        run.lip_sync.update(reference_lip_sync_rows(run.scorer, result.coeffs, samples,
                                                    np.asarray(result.frames).shape[1],
                                                    run.folder / "eval" / "reference_renderer.mp4",
                                                    max_frames=cfg.eval_max_frames))
    chain.lip_sync = dict(run.lip_sync)
    return chain


def trained_models(out_dir: str | os.PathLike = "runs") -> tuple[Path, int] | None:
    """(models folder, renderer frame size) of the newest main job (``<out_dir>/latest/models``), or None."""
    folder = Path(out_dir) / "latest" / "models"
    found = sorted(folder.glob("SadTalker_V0.0.2_*.safetensors")) if folder.is_dir() else []
    if not found:
        return None
    return folder, int(found[0].stem.rsplit("_", 1)[1])


def _plot_chain(report, result, chain) -> None:
    from .train.facerender_eval import plot_talking_chain

    report.figure(plot_talking_chain(chain, result.frames),
                  "The talking chain: does the rendered mouth follow the coefficients, and they the speech?")


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
             config: MainConfig | None = None, renderer_size: int | None = None) -> Path:
    """Run the main job; returns the path of ``report.html``. renderer_size: face-vid2vid + MappingNet frames (px)
    instead of the config's (``MainConfig.renderer_size``)."""
    import pandas as pd
    import torch

    from .report import Report
    from .train.loop import seed_everything

    cfg = config or (MainConfig.quick() if quick else MainConfig())
    if renderer_size is not None:
        cfg = replace(cfg, renderer_size=int(renderer_size))
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
            models, size = _train_models(run, cfg, corpus, train_ids, held_ids), cfg.renderer_size
        with _stage(run, "generate"):
            result = _generate(run, cfg, models, size)
        with _stage(run, "evaluate"):
            df = _evaluate(run, cfg, corpus, held_ids, result.video_path)
        with _stage(run, "talking chain"):
            run.chain = _talking_chain(run, result, cfg)
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
    if run.heldout:
        report.heading("Trained models beside their trivial baselines (held-out people)")
        rows = [{"model": title, "metric": metric, "better": "lower" if m.lower_is_better else "higher",
                 "trained here": f"{m.value:.4g}", "baseline": b, "baseline value": f"{v:.4g}",
                 "trained beats it": "yes" if m.beats(b) else "NO", "what": m.label}
                for title, rep in run.heldout.items() for metric, m in rep.metrics.items()
                for b, v in m.baselines.items()]
        report.table(pd.DataFrame(rows).set_index(["model", "metric", "baseline"]),
                     "Each trained stage on held-out people (heldout.json of its training folder) beside its trivial "
                     "baselines: beta0_only = closed lips, still_head = no head motion, mean_coefficients = the "
                     "training mean; linear_in_rho0 (PoseVAE) = least squares of the motion on the first pose. A gain "
                     "over random initialisation is not evidence; these are.")
        for title, rep in run.heldout.items():  # stand-ins and training aids the stages name (heldout.json "split")
            how = [f"{k.replace('_', ' ')}: {rep.split[k][0]}" for k in TRAINING_NOTES if rep.split.get(k)]
            if how:
                report.text(f"{title} — " + "; ".join(how), note=True)
    if run.chain is not None:
        report.heading("Does the face talk? The chain from speech to mouth")
        report.table(pd.DataFrame(run.chain.rows()).set_index(["link", "measure"]),
                     "Each link of the generation path measured on the generated video; a value near 0 where the "
                     "last column says so marks the link where the mouth stops following the speech.")
        if result is not None and result.frames is not None:
            _plot_chain(report, result, run.chain)
    if run.lip_sync:
        report.heading("Lip sync of the generated video")
        checks = {"generated video (issue 14 check)": lip_sync_check(run.lip_sync)}
        if REFERENCE in run.lip_sync:
            checks[f"{REFERENCE}: a reference, not ours"] = lip_sync_check(run.lip_sync, REFERENCE)
        report.table(pd.DataFrame(checks).T,
                     f"A talking face: offset within +-1 frame and LSE-C above the copy with its audio delayed "
                     f"{SYNC_CHECK_SHIFT_FRAMES} frames. The reference renders the same coefficients at the same frame "
                     "size without a network (the default corpus' landmark warp): where it lip-syncs and the "
                     "generated video does not, the MappingNet + renderer lose the mouth.")
        report.table(pd.DataFrame(run.lip_sync).T,
                     "Offset (frames) and LSE-C / LSE-D of the generated video, of the reference renderer, and of each "
                     f"with its audio delayed {SYNC_CHECK_SHIFT_FRAMES} frames; 'source' names the lip-sync model (a "
                     "stand-in when it says so).")
    if run.histories:
        report.heading("Training")
        _plot_histories(report, run)
        rows = [{"quantity": k, "before": b, "after": a, "ratio before/after": (b / a if a else float("nan"))}
                for k, (b, a) in run.summary.items()]
        if rows:
            report.table(pd.DataFrame(rows).set_index("quantity"),
                         "Renderer held-out figures before and after training (against random initialisation: not "
                         "evidence that it beats copying the source frame; that baseline is issue 14's)")
    report.heading("Timings")
    report.table(pd.DataFrame({"seconds": {**run.stages, "total": total}}), "Wall-clock seconds per stage")
    path = report.write()
    print(f"report: {path} ({total / 60:.1f} min)")
    if error:
        raise RuntimeError(f"the main job failed; partial report at {path}")
    return path
