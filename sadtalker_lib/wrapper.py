"""Models: every network of the official inference, on one device and precision, as paper-level operations.

The three layers (as in LivePortrait): pure ``nn.Module`` s in ``models/``; this wrapper, which owns device,
precision and weights and exposes what the paper names; ``pipeline.TalkingHeadPipeline``, which handles
files, options and the video loop.

    regress            aligned crops -> 3DMM coefficients [N, 257]                     (Sec. 3.1, Deep3DFaceRecon)
    coefficients       mel windows + beta_0, blink -> ExpNet beta_1..T, PoseVAE rho_1..T [T, 70]  (Sec. 3.2)
    map_motion         coefficient windows [B, C, 27] -> head pose bins, t, exp deltas  (Sec. 3.3, MappingNet)
    encode_source      source image -> canonical / source keypoints, appearance volume (face-vid2vid)
    keypoints          windows -> driven keypoints R x_c + t + delta                    (Sec. 3.3, Fig. 5)
    render_frames      appearance volume + source / driven keypoints -> frames         (face-vid2vid generator)

``dtype`` is the precision of the renderer networks (KPDetector, generator, MappingNets), the heavy part:
float32 (default, what the parity tests check), or bfloat16 / float16 on a GPU. Inputs are cast to it and
outputs returned as float32. The coefficient networks (regressor, ExpNet, PoseVAE) always run in float32.

``precision`` is how the renderer computes (:mod:`sadtalker_lib.precision`): ``"exact"`` (default; the networks
as loaded, at ``dtype``) or ``"fast"`` (the generator's convolutions in bfloat16 / float16 with float32 between
them, spectral norms folded; the pose path in float32), or a ``PrecisionPolicy`` (a subset of its techniques).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .audio2coeff import CoeffPrediction, audio_to_coefficients
from .official import OFFICIAL_NETWORKS, SAFETENSORS_FILE
from .official.io import CheckpointError, find_official_file, load_official
from .official.registry import build_network, read_configs
from .precision import PrecisionPolicy, convert_network, resolve
from .steps.keypoints import keypoint_transformation
from .steps.render import SourceEncoding

__all__ = ["Models", "NETWORKS"]

# attribute -> official network name (official/layout.py OFFICIAL_NETWORKS)
NETWORKS = {"regressor": "face_3drecon", "expnet": "audio2exp", "posevae": "audio2pose",
            "kp_detector": "kp_extractor", "generator": "generator", "mapping_crop": "mapping_crop",
            "mapping_full": "mapping_full"}
RENDERER = ("kp_detector", "generator", "mapping_crop", "mapping_full")


class Models:
    """The networks of the official inference path, in eval mode on ``device``.

    Any network may be None when the operations that need it are not called (``mapping_full`` is needed only
    for ``--preprocess full / extfull``). A plain callable returning the MappingNet dict may stand in for a
    mapping net (tests do this).
    """

    def __init__(self, *, regressor=None, expnet=None, posevae=None, kp_detector=None, generator=None,
                 mapping_crop=None, mapping_full=None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, name: str = "custom",
                 precision: str | PrecisionPolicy = "exact"):
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self.policy = resolve(precision, self.device)
        if not self.policy.exact and dtype != torch.float32:
            raise ValueError(f"precision {self.policy.label()!r} converts float32 networks itself: leave dtype at "
                             f"float32 (got {dtype})")
        mods = dict(regressor=regressor, expnet=expnet, posevae=posevae, kp_detector=kp_detector,
                    generator=generator, mapping_crop=mapping_crop, mapping_full=mapping_full)
        for k, m in mods.items():
            if isinstance(m, nn.Module):
                m.eval().to(self.device, dtype=dtype if k in RENDERER else torch.float32)
            setattr(self, k, convert_network(k, m, self.policy))

    @property
    def precision(self) -> str:
        """``exact``, ``fast``, or the techniques of a custom policy joined by '+'."""
        return self.policy.label()

    @classmethod
    def from_checkpoints(cls, folder: str | os.PathLike, *, size: int = 256, device: str = "cpu",
                         dtype: torch.dtype = torch.float32, old_version: bool = False,
                         preprocess: str | None = None, progress: bool = True,
                         precision: str | PrecisionPolicy = "exact") -> "Models":
        """Load every network from ``folder`` (official files, or trained-here files + ``sadtalker_lab.json``).

        Like the official ``init_path``: the ``SadTalker_V0.0.2_{size}.safetensors`` when present (unless
        ``old_version``), else the old ``.pth`` files; the mapping nets always from their ``.pth.tar``.
        """
        folder = Path(folder)
        resolve(precision, device)  # a bad precision fails before the weights are read
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
        needed = cls.required_files(size=size, old_version=old_version, preprocess=preprocess)
        if not folder.is_dir() or not any((folder / f).is_file() for f in needed):
            raise CheckpointError(
                f"checkpoint folder {folder} is missing or holds none of the needed files. Needed: "
                + ", ".join(needed) + ". Put the official SadTalker checkpoints there (README: 'Official "
                "checkpoints'), or train the project's own models with `make main`."
            )
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise CheckpointError(f"checkpoint folder {folder} lacks: {', '.join(missing)} (needed for size {size}"
                                  + (", old version" if old_version else "") + f", preprocess {preprocess or 'crop'})")
        configs = read_configs(folder)
        nets = {}
        for attr, net in tqdm(NETWORKS.items(), desc="load checkpoints", disable=not progress):
            spec = OFFICIAL_NETWORKS[net]
            if net == "mapping_full" and not (folder / spec.pth_file).is_file():
                nets[attr] = None
                continue
            src = folder / spec.pth_file if old_version else find_official_file(net, folder, size=size)
            nets[attr] = load_official(build_network(net, configs.get(net)), net, src, size=size)
        label = "trained-here" if configs else "official"
        return cls(**nets, device=device, dtype=dtype, name=f"{label} ({folder})", precision=precision)

    @staticmethod
    def required_files(*, size: int = 256, old_version: bool = False, preprocess: str | None = None) -> list[str]:
        """The checkpoint file names this configuration reads."""
        mapping = "mapping_full" if preprocess in ("full", "extfull") else "mapping_crop"
        if old_version:
            files = [OFFICIAL_NETWORKS[n].pth_file for n in ("audio2exp", "audio2pose", "face_3drecon", "generator")]
        else:
            files = [SAFETENSORS_FILE.format(size=size)]
        return list(dict.fromkeys(files + [OFFICIAL_NETWORKS[mapping].pth_file]))

    # ------------------------------------------------------------------------------------------ coefficients
    @torch.no_grad()
    def regress(self, aligned_224: np.ndarray) -> np.ndarray:
        """Aligned crops uint8 [N, 224, 224, 3] (or one [224, 224, 3]) -> coefficients [N, 257] (net_recon)."""
        x = np.asarray(aligned_224)
        if x.ndim == 3:
            x = x[None]
        t = torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).to(self.device)
        return self.regressor(t).float().cpu().numpy()

    @torch.no_grad()
    def coefficients(self, mels: torch.Tensor, ref: np.ndarray, blink: np.ndarray, *, pose_style: int = 0,
                     generator: torch.Generator | None = None) -> CoeffPrediction:
        """ExpNet + PoseVAE (+ savgol on the pose): mels [1, T, 1, 80, 16], ref (beta_0 | rho_0 per frame)
        [T, 70], blink [T] -> :class:`CoeffPrediction` (``.coeffs`` [T, 70]). ``generator`` seeds the pose noise."""
        return audio_to_coefficients(self.expnet, self.posevae, mels.to(self.device),
                                     torch.as_tensor(ref)[None].to(self.device),
                                     torch.as_tensor(blink).to(self.device), pose_style=pose_style,
                                     generator=generator)

    # ------------------------------------------------------------------------------------------ renderer
    def mapping_net(self, full: bool = False):
        """The MappingNet of the preprocess mode: 73 channels (``mapping_00109``) when ``full``, else 70."""
        if full:
            if self.mapping_full is None:
                raise CheckpointError("preprocess 'full' / 'extfull' needs mapping_00109-model.pth.tar (73-channel "
                                      "MappingNet) in the checkpoint folder")
            return self.mapping_full
        return self.mapping_crop

    @torch.no_grad()
    def map_motion(self, windows: torch.Tensor, full: bool = False) -> Mapping[str, torch.Tensor]:
        """MappingNet: coefficient windows [B, C, 27] -> yaw / pitch / roll bins [B, 66], t [B, 3], exp [B, 3K]."""
        return self.mapping_net(full)(windows.to(self.device, self.dtype))

    def image_tensor(self, image) -> torch.Tensor:
        """uint8 [S, S, 3] -> [1, 3, S, S] in [0, 1] (skimage ``img_as_float32``, as ``get_facerender_data``);
        a float tensor [1, 3, S, S] is only moved."""
        if not torch.is_tensor(image):
            image = torch.from_numpy(np.asarray(image).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        return image.to(self.device, self.dtype)

    @torch.no_grad()
    def encode_source(self, image, source_window: torch.Tensor, full: bool = False) -> SourceEncoding:
        """Source image (uint8 [S, S, 3] or [1, 3, S, S] in [0, 1]) and its window [C, 27] -> kp_canonical,
        kp_source [1, K, 3] and the appearance volume; computed once per video."""
        _check_eval(kp_detector=self.kp_detector, generator=self.generator, mapping=self.mapping_net(full))
        x = self.image_tensor(image)
        kp_canonical = self.kp_detector(x)  # [1, K, 3]
        win = source_window if source_window.ndim == 3 else source_window[None]
        kp_source = keypoint_transformation(kp_canonical, self.map_motion(win, full))  # [1, K, 3]
        with self.policy.autocast("generator", self.device):
            feature_3d = self.generator.encode_source(x)
        return SourceEncoding(kp_canonical, kp_source, feature_3d)

    @torch.no_grad()
    def keypoints(self, source: SourceEncoding, windows: torch.Tensor, full: bool = False, *, yaw=None, pitch=None,
                  roll=None, use_exp: bool = True) -> torch.Tensor:
        """Driven keypoints [B, K, 3] of B frames from their windows [B, C, 27]; yaw / pitch / roll: optional
        degrees [B] replacing the predicted angles (``--input_yaw`` ...). use_exp=False drops the deltas."""
        src = source.expand(windows.shape[0])
        over = {n: (None if a is None else torch.as_tensor(a).to(self.device, self.dtype))
                for n, a in (("yaw", yaw), ("pitch", pitch), ("roll", roll))}
        return keypoint_transformation(src.kp_canonical, self.map_motion(windows, full), wo_exp=not use_exp, **over)

    @torch.no_grad()
    def render_frames(self, source: SourceEncoding, kp_driving: torch.Tensor) -> torch.Tensor:
        """Generator: appearance volume + source keypoints + driven keypoints [B, K, 3] -> frames float32
        [B, 3, S, S] in [0, 1] on the CPU."""
        src = source.expand(kp_driving.shape[0])
        with self.policy.autocast("generator", self.device):
            out = self.generator.render(src.feature_3d, kp_source=src.kp_source, kp_driving=kp_driving)
        return out["prediction"].float().cpu()


def _check_eval(**modules) -> None:
    for name, module in modules.items():
        if getattr(module, "training", False):
            raise ValueError(f"{name} is in training mode (batch-norm would use batch statistics): call .eval() first")
