"""TalkingHeadPipeline: one portrait + one speech recording -> a talking-head mp4 (paper Fig. 2).

The pipeline is the data flow of the README in numbered steps, each a method a notebook can call alone:

    1. ``prepare_source``        detect, crop (``preprocess``), align, regress the first-frame coefficients [73]
    2. ``prepare_audio``         16 kHz mono, mel windows [T, 1, 80, 16], blink ratio [T]
    3. ``audio_to_coefficients`` ExpNet (beta_0, blink) + PoseVAE (style, seeded z) -> [T, 70]; reference videos
    4. ``render``                MappingNet windows (radius 13) + face-vid2vid, the source encoded once,
                                 ``batch_size`` consecutive frames at a time, streamed
    5. ``generate``              1-4, then paste-back (full modes), optional enhancement, mp4 + audio

Frames are streamed into the mp4 as they are rendered, so memory does not grow with the audio length.
Options mirror the official ``inference.py`` flags (see ``GenerationOptions``).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import semantics as sem
from .animate import SourceEncoding, encode_source, render_step
from .audio import DEFAULT_CONFIG, AudioError, AudioFeatures, load_audio, prepare_audio
from .audio2coeff import CoeffPrediction, add_reference_pose, audio_to_coefficients, tile_sequence
from .blink import blink_ratio
from .official.io import CheckpointError, find_official_file, load_official
from .face.align import CropInfo, PreparedPortrait, align_img, crop, flip_y, prepare_portrait, standard_landmarks_5
from .face.paste import paste_frame, render_frame_size
from .morphable.model import coeffs_73
from .official.registry import build_network, read_configs
from .official import OFFICIAL_NETWORKS, SAFETENSORS_FILE
from .video import VideoWriter, read_video

__all__ = ["GenerationOptions", "SourceInfo", "GenerationResult", "TalkingHeadPipeline", "MAX_AUDIO_SECONDS"]

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

    def __post_init__(self):
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got '{self.preprocess}'")
        if not 0 <= int(self.pose_style) <= 45:
            raise ValueError(f"pose_style must be in 0..45, got {self.pose_style}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class SourceInfo:
    """Step 1 output. image: uint8 [size, size, 3] the renderer's source; coeffs: [73] float32
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
        return self.coeffs[:, :64]

    @property
    def pose(self) -> np.ndarray:
        return self.coeffs[:, 64:70]


def _seeded(seed: int | None):
    return None if seed is None else torch.Generator().manual_seed(int(seed))


class TalkingHeadPipeline:
    """All networks of the official inference path, in eval mode on one device.

    Build it from a checkpoint folder (:meth:`from_checkpoints`) or from modules (e.g. trained here).
    ``mapping_full`` is needed only for the ``full`` / ``extfull`` modes.
    """

    def __init__(self, *, regressor, expnet, posevae, kp_detector, generator, mapping_crop, mapping_full=None,
                 size: int = 256, device: str | torch.device = "cpu", detector=None, name: str = "custom"):
        self.device = torch.device(device)
        self.size = int(size)
        self.name = name
        self.detector = detector
        mods = dict(regressor=regressor, expnet=expnet, posevae=posevae, kp_detector=kp_detector,
                    generator=generator, mapping_crop=mapping_crop, mapping_full=mapping_full)
        for k, m in mods.items():
            if m is not None:
                m.eval().to(self.device)
            setattr(self, k, m)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoints(cls, folder: str | os.PathLike, *, size: int = 256, device: str = "cpu",
                         old_version: bool = False, preprocess: str | None = None, detector=None,
                         progress: bool = True) -> "TalkingHeadPipeline":
        """Load every network from ``folder`` (official files, or trained-here files + ``sadtalker_lab.json``).

        Like the official ``init_path``: the ``SadTalker_V0.0.2_{size}.safetensors`` when present (unless
        ``old_version``), else the old ``.pth`` files; the mapping nets always from their ``.pth.tar``.
        """
        folder = Path(folder)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
        needed = cls.required_files(size=size, old_version=old_version, preprocess=preprocess)
        if not folder.is_dir() or not any((folder / f).is_file() for f in needed):
            raise CheckpointError(
                f"checkpoint folder {folder} is missing or holds none of the needed files. Needed: "
                + ", ".join(needed) + f". Put the official SadTalker checkpoints there (README: 'Official "
                "checkpoints'), or train the project's own models with `make main`."
            )
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise CheckpointError(f"checkpoint folder {folder} lacks: {', '.join(missing)} (needed for size {size}"
                                  + (", old version" if old_version else "") + f", preprocess {preprocess or 'crop'})")
        configs = read_configs(folder)
        nets = {}
        names = [("regressor", "face_3drecon"), ("expnet", "audio2exp"), ("posevae", "audio2pose"),
                 ("kp_detector", "kp_extractor"), ("generator", "generator"), ("mapping_crop", "mapping_crop"),
                 ("mapping_full", "mapping_full")]
        for attr, net in tqdm(names, desc="load checkpoints", disable=not progress):
            spec = OFFICIAL_NETWORKS[net]
            if net == "mapping_full" and not (folder / spec.pth_file).is_file():
                nets[attr] = None
                continue
            src = folder / spec.pth_file if old_version else find_official_file(net, folder, size=size)
            nets[attr] = load_official(build_network(net, configs.get(net)), net, src, size=size)
        label = "trained-here" if configs else "official"
        return cls(**nets, size=size, device=device, detector=detector, name=f"{label} ({folder})")

    @staticmethod
    def required_files(*, size: int = 256, old_version: bool = False, preprocess: str | None = None) -> list[str]:
        """The checkpoint file names this configuration reads."""
        mapping = "mapping_full" if preprocess in ("full", "extfull") else "mapping_crop"
        if old_version:
            files = [OFFICIAL_NETWORKS[n].pth_file for n in ("audio2exp", "audio2pose", "face_3drecon", "generator")]
        else:
            files = [SAFETENSORS_FILE.format(size=size)]
        return list(dict.fromkeys(files + [OFFICIAL_NETWORKS[mapping].pth_file]))

    # ------------------------------------------------------------------------------------------
    # Step 1
    @torch.no_grad()
    def regress(self, aligned_224: np.ndarray) -> np.ndarray:
        """Aligned crops uint8 [N, 224, 224, 3] (or one [224, 224, 3]) -> coefficients [N, 257]."""
        x = np.asarray(aligned_224)
        if x.ndim == 3:
            x = x[None]
        t = torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).to(self.device)
        return self.regressor(t).cpu().numpy()

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
    # Steps 2-3
    def audio_to_coefficients(self, source: SourceInfo, audio: AudioFeatures, opts: GenerationOptions) -> CoeffPrediction:
        """ExpNet + PoseVAE over the clip, with the reference-video and blink options."""
        t = audio.num_frames
        ref = np.repeat(source.coeffs[None, :70], t, axis=0)  # beta_0 / rho_0 per frame, as get_data builds it
        rng = random.Random(opts.seed) if opts.seed is not None else None
        blink = blink_ratio(opts.blink, t, rng=rng)
        if opts.ref_eyeblink is not None:  # its expression replaces beta_0; the official code zeroes the blinks
            ref[:, :64] = tile_sequence(self.video_coefficients(opts.ref_eyeblink)[:, :64], t)
            blink = np.zeros_like(blink)
        mels = audio.batch().to(self.device)  # [1, T, 1, 80, 16]
        with torch.no_grad():
            pred = audio_to_coefficients(self.expnet, self.posevae, mels, torch.from_numpy(ref)[None].to(self.device),
                                         torch.from_numpy(blink).to(self.device), pose_style=opts.pose_style,
                                         generator=_seeded(opts.seed))
        if opts.ref_pose is not None:
            pred.coeffs = add_reference_pose(pred.coeffs, self.video_coefficients(opts.ref_pose))
        return pred

    # ------------------------------------------------------------------------------------------
    # Step 4
    def mapping_for(self, preprocess: str):
        if sem.is_full_preprocess(preprocess):
            if self.mapping_full is None:
                raise CheckpointError("preprocess 'full' / 'extfull' needs mapping_00109-model.pth.tar (73-channel "
                                      "MappingNet) in the checkpoint folder")
            return self.mapping_full
        return self.mapping_crop

    def source_tensor(self, source: SourceInfo) -> torch.Tensor:
        """uint8 [S, S, 3] -> [1, 3, S, S] in [0, 1] (skimage ``img_as_float32``, as ``get_facerender_data``)."""
        return torch.from_numpy(source.image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(self.device)

    def render(self, source: SourceInfo, coeffs: np.ndarray, opts: GenerationOptions,
               progress: bool = True) -> Iterator[np.ndarray]:
        """Yield rendered frames in order, float32 [B, H, W, 3] in [0, 1], ``batch_size`` at a time.

        The source (keypoints, appearance volume, source semantics) is encoded once per call.
        """
        full = sem.is_full_preprocess(opts.preprocess)
        mapping = self.mapping_for(opts.preprocess)
        target = sem.target_coefficients(coeffs, source.coeffs, full=full, still=opts.still,
                                         expression_scale=opts.expression_scale)  # [T, C]
        # the [T, C, 27] windows are cut one batch at a time (below): memory stays flat with the clip's length
        width = sem.FULL_DIM if full else sem.MOTION_DIM
        src_sem = sem.source_window(np.asarray(source.coeffs[:width], dtype=np.float32)).to(torch.float32)[None]
        t = target.shape[0]
        angles = {n: (None if v is None else torch.as_tensor(sem.camera_degrees(v, t), dtype=torch.float32))
                  for n, v in (("yaw", opts.input_yaw), ("pitch", opts.input_pitch), ("roll", opts.input_roll))}
        enc: SourceEncoding = encode_source(self.source_tensor(source), src_sem.to(self.device),
                                            kp_detector=self.kp_detector, generator=self.generator, mapping=mapping)
        bs = opts.batch_size
        for i in tqdm(range(0, t, bs), desc="render", total=-(-t // bs), disable=not progress):
            win = sem.frame_windows(target, start=i, stop=i + bs).to(torch.float32).to(self.device)  # [B, C, 27]
            over = {n: (None if a is None else a[i:i + bs].to(self.device)) for n, a in angles.items()}
            frames, _ = render_step(enc, win, generator=self.generator, mapping=mapping, **over)
            yield frames.permute(0, 2, 3, 1).float().cpu().numpy()

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
        if sem.is_full_preprocess(source.preprocess):
            out = paste_frame(out, source.full_image, source.crop_info, extended=source.preprocess == "extfull",
                              seamless=opts.seamless)
        return out

    # ------------------------------------------------------------------------------------------
    # Step 5
    def generate(self, image, audio, out: str | os.PathLike | None = None, *, keep_frames: bool = False,
                 progress: bool = True, options: GenerationOptions | None = None, **kwargs) -> GenerationResult:
        """Portrait + speech -> talking-head video. ``kwargs`` are :class:`GenerationOptions` fields.

        ``image``: path / array / PIL image. ``audio``: a path or ``(samples, sample_rate)``.
        ``out``: mp4 path (written atomically, with the input audio muxed in); None renders without a file
        (use ``keep_frames=True`` to get the frames back).
        """
        opts = options or GenerationOptions(**kwargs)
        if opts.seed is not None:
            random.seed(opts.seed)
        timings = {}
        t0 = time.perf_counter()
        writer = VideoWriter(out, fps=FPS) if out is not None else None  # fails early on an unwritable path
        try:
            wav = load_audio(audio) if not isinstance(audio, tuple) else load_audio(*audio)
            if len(wav) / SAMPLE_RATE > MAX_AUDIO_SECONDS:
                raise AudioError(f"audio {audio if not isinstance(audio, tuple) else '(array)'} lasts "
                                 f"{len(wav) / SAMPLE_RATE / 60:.1f} min; the limit is {MAX_AUDIO_SECONDS / 60:.0f} "
                                 "min. Split it into shorter files and generate each.")
            aud = prepare_audio(wav, SAMPLE_RATE)
            timings["audio"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            source = self.prepare_source(image, opts.preprocess)
            timings["preprocess"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            pred = self.audio_to_coefficients(source, aud, opts)
            timings["audio_to_coeffs"] = time.perf_counter() - t1
            enhancer = _load_enhancer(opts.enhancer)
            kept = [] if keep_frames else None
            render_s, encode_s, n = 0.0, 0.0, 0
            t1 = time.perf_counter()
            for batch in self.render(source, pred.coeffs, opts, progress=progress):
                t2 = time.perf_counter()
                render_s += t2 - t1
                for f in batch:
                    if n >= aud.num_frames:
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
            path = None
            if writer is not None:
                t1 = time.perf_counter()
                writer.audio = (aud.wav, aud.sample_rate)
                path = writer.close()
                timings["paste_encode"] += time.perf_counter() - t1
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        timings["total"] = time.perf_counter() - t0
        return GenerationResult(video_path=path, source=source, audio=aud, coeffs=pred.coeffs, prediction=pred,
                                frames=np.stack(kept) if kept else None, num_frames=n, timings=timings)


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
