"""Build any SadTalker network by its official name, with the official or a custom (e.g. trained-here) config.

Official checkpoint files carry no configuration: the official code takes it from its yaml files, whose
values are our config defaults. Models trained here may be smaller (the CPU presets); their folder then
holds ``sadtalker_lab.json`` beside the weights, mapping each network name to its config fields, so that
:func:`build_network` rebuilds the same shapes before :func:`checkpoints.load_official` fills them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch import nn

from ..models.expnet import ExpNet, ExpNetConfig
from ..models.facevid2vid import GeneratorConfig, KPDetector, KPDetectorConfig, OcclusionAwareSPADEGenerator
from ..models.facevid2vid.dense_motion import DenseMotionConfig
from ..models.facevid2vid.head_pose import HEEstimator, HEEstimatorConfig
from ..models.mapping import MappingNet, MappingNetConfig
from ..models.posevae import PoseVAE, PoseVAEConfig
from ..models.regressor import CoefficientRegressor, RegressorConfig

CONFIG_FILE = "sadtalker_lab.json"

# network name (official.OFFICIAL_NETWORKS) -> (module class, config class, official default config)
NETWORKS: dict[str, tuple[type[nn.Module], type, object]] = {
    "audio2exp": (ExpNet, ExpNetConfig, ExpNetConfig()),
    "audio2pose": (PoseVAE, PoseVAEConfig, PoseVAEConfig()),
    "face_3drecon": (CoefficientRegressor, RegressorConfig, RegressorConfig()),
    "kp_extractor": (KPDetector, KPDetectorConfig, KPDetectorConfig()),
    "generator": (OcclusionAwareSPADEGenerator, GeneratorConfig, GeneratorConfig()),
    "he_estimator": (HEEstimator, HEEstimatorConfig, HEEstimatorConfig()),
    "mapping_crop": (MappingNet, MappingNetConfig, MappingNetConfig.crop()),
    "mapping_full": (MappingNet, MappingNetConfig, MappingNetConfig.full()),
}
_NESTED = {(GeneratorConfig, "dense_motion"): DenseMotionConfig}


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(cls, data: dict):
    """Rebuild a config dataclass from :func:`config_to_dict` output (lists back to tuples, nested configs)."""
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        if k not in names:
            raise ValueError(f"{cls.__name__} has no field '{k}' (config file from another version?)")
        if (cls, k) in _NESTED and isinstance(v, dict):
            v = config_from_dict(_NESTED[(cls, k)], v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def read_configs(folder: str | Path) -> dict[str, object]:
    """Configs stored beside trained-here checkpoints ({} for a folder of official files)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {name: config_from_dict(NETWORKS[name][1], cfg) for name, cfg in data.get("configs", {}).items()}


def write_configs(folder: str | Path, configs: dict[str, object], **info) -> Path:
    """Store the configs of trained-here networks beside their checkpoints (plus free-form ``info``)."""
    path = Path(folder) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = {**old.get("configs", {}), **{n: config_to_dict(c) for n, c in configs.items()}}
    path.write_text(json.dumps({**old, **info, "configs": merged}, indent=1))
    return path


def build_network(name: str, config=None) -> nn.Module:
    """A freshly initialised network ``name`` with ``config`` (default: the official one)."""
    if name not in NETWORKS:
        raise KeyError(f"unknown network '{name}'; known: {sorted(NETWORKS)}")
    cls, _, default = NETWORKS[name]
    return cls(config if config is not None else default)


# Small, fast configs for tests, benchmarks of long audio, and CPU training (same code, fewer channels).
def tiny_configs() -> dict[str, object]:
    from ..models.facevid2vid import FaceVid2VidConfig

    fv = FaceVid2VidConfig.tiny()
    return {
        "audio2exp": ExpNetConfig(),
        "audio2pose": PoseVAEConfig(),
        "face_3drecon": RegressorConfig(backbone="resnet18", width=16),
        "kp_extractor": fv.kp_detector,
        "generator": fv.generator,
        "mapping_crop": MappingNetConfig.tiny(70),
        "mapping_full": MappingNetConfig.tiny(73),
    }


def save_networks(folder: str | Path, nets: dict[str, nn.Module], configs: dict[str, object] | None = None,
                  size: int = 256, **info) -> Path:
    """Save networks in the official file layout (one safetensors + the mapping / he_estimator .pth.tar files)
    and, when ``configs`` are given (non-official sizes), ``sadtalker_lab.json`` beside them.

    Saving into a folder that already holds a safetensors file keeps the other networks' sections in it."""
    from .io import save_official_pth, save_official_safetensors
    from .layout import OFFICIAL_NETWORKS, SAFETENSORS_FILE

    folder = Path(folder)
    in_st = {n: m for n, m in nets.items() if OFFICIAL_NETWORKS[n].safetensors_prefix is not None}
    if in_st:
        path = folder / SAFETENSORS_FILE.format(size=size)
        keep = {}
        if path.is_file():  # merge: keep the sections of networks saved there earlier (e.g. the regressor)
            from .io import read_checkpoint

            ours = tuple(OFFICIAL_NETWORKS[n].safetensors_prefix for n in in_st)
            keep = {k: v for k, v in read_checkpoint(path).items() if not k.startswith(ours)}
        save_official_safetensors(in_st, path, extra=keep)
    for n, m in nets.items():
        if n not in in_st:
            save_official_pth({n: m}, folder / OFFICIAL_NETWORKS[n].pth_file)
    if configs:
        write_configs(folder, configs, **info)
    return folder


def seeded_networks(configs: dict[str, object] | None = None, seed: int = 0) -> dict[str, nn.Module]:
    """Freshly initialised networks (torch seeded) for ``configs`` (default: :func:`tiny_configs`)."""
    import torch

    configs = configs or tiny_configs()
    torch.manual_seed(seed)
    return {n: build_network(n, c).eval() for n, c in configs.items()}
