"""face-vid2vid's networks as one module dict, and their checkpoint folders (official layout) — for
``train.facevid2vid`` (which re-exports all of this) and the MappingNet stage.

The networks travel as :class:`FaceVid2VidNets`, an ``nn.ModuleDict`` keyed by the official network names. A run
folder is a checkpoint folder in the official layout (``registry.save_networks``):
``SadTalker_V0.0.2_256.safetensors`` (kp_extractor + generator), ``facevid2vid_00189-model.pth.tar``
(kp_extractor + generator + he_estimator), and ``sadtalker_lab.json`` (the network configs and
``facerender.image_size``, the frame size the renderer was trained at).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..coeffs import FULL_DIM
from ..official import OFFICIAL_NETWORKS
from ..official.io import load_official, save_official_pth
from ..official.registry import CONFIG_FILE, build_network, read_configs, save_networks

__all__ = ["FACEVID2VID_NETWORKS", "FaceVid2VidNets", "build_facevid2vid", "mapping_network", "save_renderer",
           "load_renderer"]

FACEVID2VID_NETWORKS = ("kp_extractor", "generator", "he_estimator")  # official names, in the .pth.tar


# ---------------------------------------------------------------------------------------------
class FaceVid2VidNets(nn.ModuleDict):
    """face-vid2vid's three networks by official name (``kp_extractor``, ``generator``, ``he_estimator``; also
    reachable as attributes) plus ``image_size``, the frame side in px they were trained at."""

    def __init__(self, kp_extractor: nn.Module, generator: nn.Module, he_estimator: nn.Module, image_size: int):
        super().__init__({"kp_extractor": kp_extractor, "generator": generator, "he_estimator": he_estimator})
        self.image_size = int(image_size)


def build_facevid2vid(config, seed: int | None = None) -> FaceVid2VidNets:
    """Fresh networks of a ``FaceVid2VidTrainConfig`` (torch seeded with ``seed``, default ``config.seed``),
    train mode; ``config.identity_mask_logit`` (not None) sets the dense-motion mask bias, and
    ``config.zero_motion_heads`` starts the HEEstimator's heads at zero (every frame: no rotation, t = 0, no
    expression, so every keypoint motion starts as the identity and none is worse than the identity motion)."""
    torch.manual_seed(config.seed if seed is None else seed)
    configs = (config.kp_detector, config.generator, config.he_estimator)
    nets = FaceVid2VidNets(*(build_network(n, c) for n, c in zip(FACEVID2VID_NETWORKS, configs)), config.image_size)
    if getattr(config, "zero_motion_heads", False):  # every frame starts with the same pose: x_d = x_s
        with torch.no_grad():
            he = nets.he_estimator
            for head in (he.fc_yaw, he.fc_pitch, he.fc_roll, he.fc_t, he.fc_exp):
                head.weight.zero_()
                head.bias.zero_()
    if config.identity_mask_logit is not None:  # an initialisation only: the parameter layout stays official
        with torch.no_grad():
            bias = nets.generator.dense_motion_network.mask.bias
            bias.zero_()
            bias[0] = config.identity_mask_logit
    return nets


def mapping_network(coeff_nc: int) -> str:
    """The official name of a MappingNet: mapping_crop (70 channels: exp | pose) or mapping_full (73: + crop)."""
    return "mapping_full" if coeff_nc == FULL_DIM else "mapping_crop"


def _safetensors_size(image_size: int) -> int:
    """The size in the safetensors file name: 256 up to 256 px frames, else 512 (the official two)."""
    return 256 if image_size <= 256 else 512


def save_renderer(folder: str | os.PathLike, nets: FaceVid2VidNets, mapping: nn.Module | None = None,
                  **info) -> Path:
    """Write the official layout into ``folder`` (see the module docstring; with a MappingNet also
    ``mapping_00229-model.pth.tar``); ``info`` goes into ``sadtalker_lab.json`` under ``facerender`` together
    with ``image_size``."""
    folder = Path(folder)
    saved = {n: nets[n] for n in ("kp_extractor", "generator")}
    configs = {n: m.config for n, m in nets.items()}
    if mapping is not None:
        name = mapping_network(mapping.config.coeff_nc)
        saved[name] = mapping
        configs[name] = mapping.config
    save_networks(folder, saved, configs, size=_safetensors_size(nets.image_size),
                  facerender={"image_size": int(nets.image_size), **info})
    # the complete old-version file too (save_networks writes only the networks it was given there)
    save_official_pth(dict(nets.items()), folder / OFFICIAL_NETWORKS["generator"].pth_file)
    return folder


def _image_size_of(folder: Path, default: int = 256) -> int:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return default
    return int(json.loads(path.read_text()).get("facerender", {}).get("image_size", default))


def load_renderer(folder: str | os.PathLike) -> FaceVid2VidNets:
    """The face-vid2vid networks of a checkpoint folder (trained here, or official), in eval mode.

    Configs come from ``sadtalker_lab.json`` (``registry.read_configs``); without one the official sizes.
    kp_extractor / generator: the safetensors when present, else the .pth.tar; he_estimator: the .pth.tar.
    """
    folder = Path(folder)
    configs = read_configs(folder)
    size = _image_size_of(folder)
    nets = [load_official(build_network(n, configs.get(n)), n, folder, size=_safetensors_size(size))
            for n in FACEVID2VID_NETWORKS]
    return FaceVid2VidNets(*nets, size).eval()
