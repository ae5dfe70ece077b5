"""Where the evaluation looks for pretrained weights, and the error it raises when they are missing.

None of these files can be downloaded here; the user puts them in place. Every metric that needs one
either loads it (torch.load with ``weights_only=True``) or says exactly which file to put where; the
table (``metrics.tables``) turns a missing file into an n/a cell with that message, never a made-up number.

==============  ======================================================  =======================================
metric          file (default location)                                 where it comes from
==============  ======================================================  =======================================
FID             ``<torch hub>/checkpoints/pt_inception-2015-12-05-      pytorch-fid's FID Inception weights
                6726825d.pth`` (``torch.hub.get_dir()``, normally       (github.com/mseitzer/pytorch-fid
                ``~/.cache/torch/hub``)                                 releases, ``fid_weights``)
LSE-C / LSE-D   ``<cache>/syncnet/syncnet_v2.model``                     joonson/syncnet_python
                                                                        ``download_model.sh``
LSE (offline)   ``<cache>/syncnet/syncnet_trained_here.pt``              ``train.syncnet.train_syncnet``
CSIM            ``<cache>/arcface/backbone.pth``                         insightface ``arcface_torch`` (IResNet)
Diversity       ``<cache>/hopenet/hopenet_robust_alpha1.pkl``            natanielruiz/deep-head-pose
==============  ======================================================  =======================================

``<cache>`` is ``$SADTALKER_LAB_CACHE`` or ``~/.cache/sadtalker-lab`` (the same folder the project uses for
its other cached files).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WeightsMissingError", "cache_dir", "default_weight_path", "find_weights", "load_state", "WEIGHT_FILES"]


class WeightsMissingError(FileNotFoundError):
    """A pretrained weight file a metric needs is not present (the message says where to put it)."""


WEIGHT_FILES = {
    "syncnet": ("syncnet", "syncnet_v2.model", "joonson/syncnet_python: sh download_model.sh (data/syncnet_v2.model)"),
    "syncnet_trained_here": ("syncnet", "syncnet_trained_here.pt",
                             "train.syncnet.train_syncnet(...) on the project's corpus"),
    "arcface": ("arcface", "backbone.pth",
                "insightface recognition/arcface_torch model zoo (an IResNet backbone.pth, e.g. ms1mv3_arcface_r100)"),
    "hopenet": ("hopenet", "hopenet_robust_alpha1.pkl", "natanielruiz/deep-head-pose README (Hopenet robust, alpha 1)"),
}


def cache_dir() -> Path:
    """``$SADTALKER_LAB_CACHE`` or ``~/.cache/sadtalker-lab``."""
    return Path(os.environ.get("SADTALKER_LAB_CACHE", Path.home() / ".cache" / "sadtalker-lab"))


def default_weight_path(name: str) -> Path:
    """Default location of the weight file ``name`` (a key of ``WEIGHT_FILES``)."""
    folder, file, _ = WEIGHT_FILES[name]
    return cache_dir() / folder / file


def find_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    """The weight file for ``name``: ``path`` if given, else the default location; raises WeightsMissingError."""
    folder, file, source = WEIGHT_FILES[name]
    candidate = Path(path) if path is not None else default_weight_path(name)
    if candidate.is_dir():
        candidate = candidate / file
    if not candidate.is_file():
        raise WeightsMissingError(
            f"{name} weights not found at {candidate}. Get {file} from {source} and put it there "
            f"(or pass its path explicitly)."
        )
    return candidate


def load_state(module, state: dict, path) -> None:
    """``module.load_state_dict(state)`` with every key checked, except BatchNorm's ``num_batches_tracked``
    buffers, which files saved before PyTorch 0.4.1 (syncnet_v2.model, Hopenet) do not have and which eval
    mode never uses. A mismatch raises ``ValueError`` naming the file."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match {type(module).__name__} (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
