"""TalkingHeadPipeline: one portrait + one speech recording -> a talking-head mp4 (paper Fig. 2).

:meth:`TalkingHeadPipeline.generate` is the data flow of the README in numbered steps, each a method a notebook
can call alone:

    1. ``load_speech``           16 kHz mono, mel windows [T, 1, 80, 16]
    2. ``prepare_source``        detect, crop (``preprocess``), align, regress the first-frame coefficients [73]
    3. ``audio_to_coefficients`` blink ratio [T]; ExpNet (beta_0, blink) + PoseVAE (style, seeded z) -> [T, 70];
                                 reference videos
    4. ``driving_windows``       expression scale / still / full-mode columns, MappingNet windows (radius 13),
                                 camera overrides
    5. ``render``                face-vid2vid, the source encoded once, ``batch_size`` consecutive frames at a
                                 time, streamed (``steps.render.render_stream``: the one render loop)
    6. ``finish_frame``          resize to the crop, optional enhancement, paste-back (full modes); frames are
                                 written to the mp4 as they come, so memory does not grow with the audio length

The networks live in :class:`~sadtalker_lib.wrapper.Models` (device, precision, weights; paper-level
operations). Options mirror the official ``inference.py`` flags (see ``GenerationOptions``).
"""
from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import DEFAULT_CONFIG, AudioError, AudioFeatures, load_audio, prepare_audio
from .audio2coeff import CoeffPrediction, add_reference_pose, tile_sequence
from .blink import blink_ratio
from .coeffs import EXP, MOTION_DIM, POSE
from .face.align import CropInfo, PreparedPortrait, align_img, crop, flip_y, prepare_portrait, standard_landmarks_5
from .face.paste import paste_frame, render_frame_size
from .morphable.model import coeffs_73
from .steps.render import RenderedBatch, render_stream
from .steps.windows import DrivingWindows, driving_windows, is_full_preprocess
from .video import VideoWriter, read_video
from .wrapper import NETWORKS, Models

__all__ = ["GenerationOptions", "SourceInfo", "GenerationResult", "TalkingHeadPipeline", "Models",
           "MAX_AUDIO_SECONDS"]

SAMPLE_RATE = DEFAULT_CONFIG.sample_rate  # 16 kHz
FPS = DEFAULT_CONFIG.fps  # 25: the official code hard-codes it
MAX_AUDIO_SECONDS = 3600.0  # longer audio is refused with a clear message (split it)
PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")


@dataclass
class GenerationOptions:
    """The user-facing options of the official inference (defaults = official defaults)."""

    preprocess: str = "crop"  # crop | extcrop | resize | full | extfull
    still: bool = False  # keep the source head pose
    pose_style: int = 0  # PoseVAE style class 0..45
    expression_scale: float = 1.0  # multiplies the generated exp coefficients
    ref_eyeblink: str | None = None  # video whose expression replaces beta_0 (and disables random blinks)
    ref_pose: str | None = None  # video whose pose motion is added
    input_yaw: Sequence[float] | None = None  # degree key points, interpolated over the clip
    input_pitch: Sequence[float] | None = None
    input_roll: Sequence[float] | None = None
    batch_size: int = 2  # frames rendered per generator call
    blink: object = "random"  # "random" (official), "none", or a per-frame signal in [0, 1]
    seed: int | None = None  # seeds the pose noise and the blinks; None: the global RNGs (official)
    enhancer: str | None = None  # "gfpgan" when the gfpgan package and weights are present
    seamless: bool = True  # full modes: Poisson blending as official; False: hard paste
    paste_solver: str | None = None  # full modes: "opencv" (official seamlessClone) | "fast" (face/paste.py
    #                                  SeamlessPaste, within 1 grey level, >= 5x faster); None: "fast" with
    #                                  precision "fast", else "opencv"

    def __post_init__(self):
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got '{self.preprocess}'")
        if not 0 <= int(self.pose_style) <= 45:
            raise ValueError(f"pose_style must be in 0..45, got {self.pose_style}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.paste_solver not in (None, "opencv", "fast"):
            raise ValueError(f"paste_solver must be 'opencv', 'fast' or None, got {self.paste_solver!r}")


@dataclass
class SourceInfo:
    """Step 2 output. image: uint8 [size, size, 3] the renderer's source; coeffs: [73] float32
    (exp 64 | angle 3 | trans 3 | crop s, tx, ty); coeffs_257: the regressor's full output;
    full_image: the original picture (uint8 RGB) for the paste-back; crop_info: the crop geometry."""

    image: np.ndarray
    coeffs: np.ndarray
    coeffs_257: np.ndarray
    full_image: np.ndarray
    crop_info: CropInfo
    landmarks: np.ndarray | None
    preprocess: str


@dataclass
class GenerationResult:
    """What :meth:`TalkingHeadPipeline.generate` returns, for plotting and inspection.

    coeffs [T, 70] the generated motion (exp | angle | trans); exp [T, 64]; pose [T, 6];
    frames: uint8 [T, H, W, 3] when ``keep_frames`` (else None: frames were only streamed to the mp4);
    timings: seconds per stage.
    """

    video_path: Path | None
    source: SourceInfo
    audio: AudioFeatures
    coeffs: np.ndarray
    prediction: CoeffPrediction
    frames: np.ndarray | None
    num_frames: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exp(self) -> np.ndarray:
        return self.coeffs[:, EXP]

    @property
    def pose(self) -> np.ndarray:
        return self.coeffs[:, POSE]


def _seeded(seed: int | None):
    return None if seed is None else torch.Generator().manual_seed(int(seed))


class TalkingHeadPipeline:
    """Files, options and the video loop around a :class:`Models` (all networks of the official inference path).

    Build it from a checkpoint folder (:meth:`from_checkpoints`), from a :class:`Models` (``models=``), or from
    modules (e.g. trained here). ``mapping_full`` is needed only for the ``full`` / ``extfull`` modes. The
    networks stay reachable as attributes (``pipe.generator`` ...).
    """

    def __init__(self, *, models: Models | None = None, size: int = 256, device: str | torch.device = "cpu",
                 detector=None, name: str = "custom", **networks):
        unknown = set(networks) - set(NETWORKS)
        if unknown:
            raise TypeError(f"unknown networks {sorted(unknown)}; expected some of {list(NETWORKS)}")
        self.models = models if models is not None else Models(**networks, device=device, name=name)
        self.size = int(size)
        self.detector = detector

    def __getattr__(self, attr):  # the networks (pipe.generator, ...) are the wrapper's
        if attr in NETWORKS and "models" in self.__dict__:
            return getattr(self.models, attr)
        raise AttributeError(f"{type(self).__name__} has no attribute '{attr}'")

    @property
    def device(self) -> torch.device:
        return self.models.device

    @property
    def name(self) -> str:
        return self.models.name

    @classmethod
    def from_checkpoints(cls, folder: str | os.PathLike, *, size: int = 256, device: str = "cpu",
                         old_version: bool = False, preprocess: str | None = None, detector=None,
                         progress: bool = True, dtype: torch.dtype = torch.float32,
                         precision: str = "exact") -> "TalkingHeadPipeline":
        """Load every network from ``folder`` (:meth:`Models.from_checkpoints`: official files, or trained-here
        files + ``sadtalker_lab.json``); ``dtype``: the renderer's precision (float32 unless on a GPU);
        ``precision``: ``"exact"`` or ``"fast"`` (:mod:`sadtalker_lib.precision`)."""
        models = Models.from_checkpoints(folder, size=size, device=device, dtype=dtype, old_version=old_version,
                                         preprocess=preprocess, progress=progress, precision=precision)
        return cls(models=models, size=size, detector=detector)

    required_files = staticmethod(Models.required_files)

    def regress(self, aligned_224: np.ndarray) -> np.ndarray:
        """Aligned crops uint8 [N, 224, 224, 3] (or one [224, 224, 3]) -> coefficients [N, 257]."""
        return self.models.regress(aligned_224)

    # ------------------------------------------------------------------------------------------
    # Step 1
    def load_speech(self, audio) -> AudioFeatures:
        """A path or ``(samples, sample_rate)`` -> :class:`AudioFeatures` (16 kHz, mel windows); refuses > 1 h."""
        wav = load_audio(*audio) if isinstance(audio, tuple) else load_audio(audio)
        if len(wav) / SAMPLE_RATE > MAX_AUDIO_SECONDS:
            raise AudioError(f"audio {audio if not isinstance(audio, tuple) else '(array)'} lasts "
                             f"{len(wav) / SAMPLE_RATE / 60:.1f} min; the limit is {MAX_AUDIO_SECONDS / 60:.0f} "
                             "min. Split it into shorter files and generate each.")
        return prepare_audio(wav, SAMPLE_RATE)

    # ------------------------------------------------------------------------------------------
    # Step 2
    def prepare_source(self, image, preprocess: str = "crop") -> SourceInfo:
        """Portrait (path, array or PIL) -> :class:`SourceInfo` (official ``CropAndExtract.generate``)."""
        from .face.detect import load_image

        full = load_image(image)
        prepared: PreparedPortrait = prepare_portrait(full, mode=preprocess, size=self.size, detector=self.detector)
        c257 = self.regress(prepared.aligned.image)[0]
        crop_params = torch.from_numpy(np.asarray(prepared.aligned.trans_params[2:5], dtype=np.float32))
        c73 = coeffs_73(torch.from_numpy(c257), crop_params).numpy().astype(np.float32)
        return SourceInfo(image=prepared.source, coeffs=c73.reshape(-1), coeffs_257=c257, full_image=full,
                          crop_info=prepared.crop_info, landmarks=prepared.landmarks, preprocess=preprocess)

    def video_coefficients(self, video: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
        """Coefficients [N, 73] of every frame of a reference video (``--ref_eyeblink`` / ``--ref_pose``).

        Like the official code: the crop is found on the first frame and applied to all frames; landmarks and
        alignment are per frame (a frame without a detectable face reuses the previous frame's landmarks).
        """
        from .face.detect import NoFaceError, default_detector

        detector = self.detector or default_detector()
        frames = read_video(video, fps=FPS, max_frames=max_frames)
        lm0 = detector.landmarks(frames[0])
        cropped, _ = crop(list(frames), lm0, mode="crop")
        crops, params, last = [], [], None
        for f in tqdm(cropped, desc="reference video", leave=False):
            import cv2

            f = cv2.resize(f, (self.size, self.size))
            try:
                lm = flip_y(detector.landmarks(f), f.shape[0])
            except NoFaceError:
                lm = last if last is not None else standard_landmarks_5(f.shape[1], f.shape[0])
            last = lm
            a = align_img(f, lm)
            crops.append(a.image)
            params.append(a.trans_params)
        c257 = np.concatenate([self.regress(np.stack(crops[i:i + 16])) for i in range(0, len(crops), 16)])
        crop_params = torch.from_numpy(np.stack(params)[:, 2:5].astype(np.float32))
        return coeffs_73(torch.from_numpy(c257), crop_params).numpy().astype(np.float32)

    # ------------------------------------------------------------------------------------------
    # Step 3
    def audio_to_coefficients(self, source: SourceInfo, audio: AudioFeatures,
                              opts: GenerationOptions) -> CoeffPrediction:
        """ExpNet + PoseVAE over the clip, with the reference-video and blink options."""
        t = audio.num_frames
        ref = np.repeat(source.coeffs[None, :MOTION_DIM], t, axis=0)  # beta_0 / rho_0 per frame, as get_data builds
        rng = random.Random(opts.seed) if opts.seed is not None else None
        blink = blink_ratio(opts.blink, t, rng=rng)
        if opts.ref_eyeblink is not None:  # its expression replaces beta_0; the official code zeroes the blinks
            ref[:, EXP] = tile_sequence(self.video_coefficients(opts.ref_eyeblink)[:, EXP], t)
            blink = np.zeros_like(blink)
        pred = self.models.coefficients(audio.batch(), ref, blink, pose_style=opts.pose_style,
                                        generator=_seeded(opts.seed))
        if opts.ref_pose is not None:
            pred.coeffs = add_reference_pose(pred.coeffs, self.video_coefficients(opts.ref_pose))
        return pred

    # ------------------------------------------------------------------------------------------
    # Step 4
    @staticmethod
    def driving_windows(source: SourceInfo | np.ndarray, coeffs: np.ndarray, opts: GenerationOptions) -> DrivingWindows:
        """Generated coefficients [T, 70] -> the MappingNet windows of every frame (cut lazily, one batch at a
        time), with ``still`` / ``expression_scale`` / the full-mode crop columns / ``--input_yaw`` ... applied.
        source: a :class:`SourceInfo` or its coefficients [73]."""
        src = source.coeffs if isinstance(source, SourceInfo) else source
        return driving_windows(coeffs, np.asarray(src, dtype=np.float32), preprocess=opts.preprocess,
                               still=opts.still, expression_scale=opts.expression_scale, input_yaw=opts.input_yaw,
                               input_pitch=opts.input_pitch, input_roll=opts.input_roll)

    # ------------------------------------------------------------------------------------------
    # Step 5
    def render_batches(self, source: SourceInfo | np.ndarray, coeffs: np.ndarray, opts: GenerationOptions, *,
                       source_coeffs: np.ndarray | None = None, start: int = 0, stop: int | None = None,
                       progress: bool = True) -> Iterator[RenderedBatch]:
        """The one render loop (``steps.render.render_stream``) over frames start .. stop-1: yields
        :class:`RenderedBatch` es (frames [B, 3, S, S] in [0, 1], driven keypoints [B, K, 3]).

        source: a :class:`SourceInfo`, or the renderer's source image (uint8 [S, S, 3] or [1, 3, S, S] in
        [0, 1]) with its coefficients [73] in ``source_coeffs``."""
        if isinstance(source, SourceInfo):
            image, source_coeffs = source.image, source.coeffs
        else:
            image = source
        windows = self.driving_windows(source_coeffs, coeffs, opts)
        yield from render_stream(self.models, image, windows, full=is_full_preprocess(opts.preprocess),
                                 batch_size=opts.batch_size, start=start, stop=stop, progress=progress)

    def render(self, source: SourceInfo, coeffs: np.ndarray, opts: GenerationOptions,
               progress: bool = True) -> Iterator[np.ndarray]:
        """Yield rendered frames in order, float32 [B, H, W, 3] in [0, 1], ``batch_size`` at a time."""
        for batch in self.render_batches(source, coeffs, opts, progress=progress):
            yield batch.frames.permute(0, 2, 3, 1).numpy()

    # ------------------------------------------------------------------------------------------
    # Step 6
    def finish_frame(self, frame: np.ndarray, source: SourceInfo, opts: GenerationOptions, enhancer=None) -> np.ndarray:
        """A rendered frame float [S, S, 3] -> the output frame uint8: resized to the crop's aspect
        (official ``AnimateFromCoeff.generate``), optionally enhanced, pasted back in the full modes."""
        import cv2

        img = (np.clip(frame, 0, 1) * 255.0 + 0.5).astype(np.uint8)  # skimage img_as_ubyte rounds
        if source.crop_info is None or source.crop_info.size is None:
            out = img
        else:
            w, h = render_frame_size(source.crop_info, self.size)
            out = cv2.resize(img, (w, h)) if (w, h) != img.shape[1::-1] else img
        if enhancer is not None:
            out = enhancer(out)
        if is_full_preprocess(source.preprocess):
            solver = opts.paste_solver or ("fast" if self.models.precision == "fast" else "opencv")
            out = paste_frame(out, source.full_image, source.crop_info, extended=source.preprocess == "extfull",
                              seamless=opts.seamless, solver=solver)
        return out

    # ------------------------------------------------------------------------------------------
    def generate(self, image, audio, out: str | os.PathLike | None = None, *, keep_frames: bool = False,
                 progress: bool = True, options: GenerationOptions | None = None, **kwargs) -> GenerationResult:
        """Portrait + speech -> talking-head video: steps 1-6 of the module docstring. ``kwargs`` are
        :class:`GenerationOptions` fields.

        ``image``: path / array / PIL image. ``audio``: a path or ``(samples, sample_rate)``.
        ``out``: mp4 path (written atomically, with the input audio muxed in); None renders without a file
        (use ``keep_frames=True`` to get the frames back).
        """
        opts = options or GenerationOptions(**kwargs)
        if opts.seed is not None:
            random.seed(opts.seed)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        writer = VideoWriter(out, fps=FPS) if out is not None else None  # fails early on an unwritable path
        try:
            with _timed(timings, "audio"):
                aud = self.load_speech(audio)  # 1
            with _timed(timings, "preprocess"):
                source = self.prepare_source(image, opts.preprocess)  # 2
            with _timed(timings, "audio_to_coeffs"):
                pred = self.audio_to_coefficients(source, aud, opts)  # 3
            enhancer = _load_enhancer(opts.enhancer)
            kept = [] if keep_frames else None
            frames = self.render(source, pred.coeffs, opts, progress=progress)  # 4-5 (lazy: runs in the loop)
            n = self._write_frames(frames, source, opts, enhancer, writer, kept, aud.num_frames, timings)  # 6
            path = None
            if writer is not None:
                with _timed(timings, "paste_encode"):
                    writer.audio = (aud.wav, aud.sample_rate)
                    path = writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        timings["total"] = time.perf_counter() - t0
        return GenerationResult(video_path=path, source=source, audio=aud, coeffs=pred.coeffs, prediction=pred,
                                frames=np.stack(kept) if kept else None, num_frames=n, timings=timings)

    def _write_frames(self, batches, source: SourceInfo, opts: GenerationOptions, enhancer, writer, kept,
                      num_frames: int, timings: dict[str, float]) -> int:
        """Step 6 over the streamed batches: finish each frame, write / keep it; time render and paste+encode."""
        render_s, encode_s, n = 0.0, 0.0, 0
        t1 = time.perf_counter()
        for batch in batches:
            t2 = time.perf_counter()
            render_s += t2 - t1
            for f in batch:
                if n >= num_frames:
                    break
                frame = self.finish_frame(f, source, opts, enhancer)
                if writer is not None:
                    writer.write(frame)
                if kept is not None:
                    kept.append(frame)
                n += 1
            t1 = time.perf_counter()
            encode_s += t1 - t2
        timings["render"], timings["paste_encode"] = render_s, encode_s
        return n


@contextmanager
def _timed(timings: dict[str, float], key: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t


def _load_enhancer(name: str | None):
    """GFPGAN face enhancement when the ``gfpgan`` package and ``GFPGANv1.4.pth`` are present."""
    if name is None:
        return None
    if name != "gfpgan":
        raise ValueError(f"unknown enhancer '{name}'; the only one supported is 'gfpgan'")
    try:
        from gfpgan import GFPGANer  # noqa: F401
    except ImportError as e:
        raise RuntimeError("--enhancer gfpgan needs the gfpgan package (`pip install gfpgan`) and its weights "
                           "GFPGANv1.4.pth in checkpoints/gfpgan/weights/; run without --enhancer otherwise") from e
    weights = Path("checkpoints/gfpgan/weights/GFPGANv1.4.pth")
    if not weights.is_file():
        raise RuntimeError(f"--enhancer gfpgan needs {weights} (the official download puts it there)")
    restorer = GFPGANer(model_path=str(weights), upscale=1, arch="clean", channel_multiplier=2, bg_upsampler=None)

    def enhance(rgb: np.ndarray) -> np.ndarray:
        _, _, out = restorer.enhance(rgb[..., ::-1].copy(), has_aligned=False, only_center_face=False, paste_back=True)
        return out[..., ::-1].copy()

    return enhance
