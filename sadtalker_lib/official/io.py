"""Checkpoint I/O in the official SadTalker layouts (safetensors and old-version ``.pth`` / ``.pth.tar``).

Only safe readers are used: ``safetensors`` and ``torch.load(..., weights_only=True)``. A pickle that
would run code is refused. Every official key of a network must be consumed and every parameter of our
module filled; otherwise :class:`CheckpointError` lists the missing / unexpected keys and the file.

Typical use::

    net = ExpNet(ExpNetConfig())
    load_official(net, "audio2exp", "checkpoints/")          # a folder: safetensors preferred
    load_official(net, "audio2exp", "checkpoints/auido2exp_00300-model.pth")
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..paths import partial_path
from .layout import OFFICIAL_NETWORKS, SAFETENSORS_FILE, to_official_key, to_our_key

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "find_official_file",
    "official_state_dict",
    "load_official",
    "load_state_dict_checked",
    "save_official_pth",
    "save_official_safetensors",
    "write_checkpoint",
]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe, or holds another model."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint file safely into a dict (flat tensors for safetensors, the saved dict for torch files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path}. Put the official SadTalker files (or ones written by "
            "sadtalker_lib.official.io.save_official_*) in that folder; README.md lists the file names."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}. Download or write it again.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"cannot read safetensors file {path} ({e}). The file is truncated or not a safetensors "
                "file: download or write it again."
            ) from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it is a pickle that holds more than tensors and plain containers "
            f"(loading it could run arbitrary code). Only weights-only checkpoints are accepted; convert it "
            f"with a trusted tool to safetensors or a plain state dict. Details: {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {e}). The file is truncated or not a torch "
            "checkpoint: download or write it again."
        ) from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of state dicts.")
    return obj


def find_official_file(network: str, folder: str | os.PathLike, size: int = 256,
                       prefer_safetensors: bool = True) -> Path:
    """The file in ``folder`` that the official inference would read ``network`` from.

    Like the official ``init_path``: the safetensors file of the given size when present (and when it
    holds the network), else the old-version ``.pth`` file.
    """
    spec = _spec(network)
    folder = Path(folder)
    st = folder / SAFETENSORS_FILE.format(size=size)
    if prefer_safetensors and spec.safetensors_prefix is not None and st.is_file():
        return st
    pth = folder / spec.pth_file
    if pth.is_file():
        return pth
    wanted = [pth.name] if spec.safetensors_prefix is None else [st.name, pth.name]
    raise CheckpointError(
        f"no checkpoint for '{network}' in {folder}: expected " + " or ".join(wanted) + ". "
        "Place the official SadTalker checkpoints there (see README, 'Official checkpoints')."
    )


def _spec(network: str):
    if network not in OFFICIAL_NETWORKS:
        raise KeyError(f"unknown network '{network}'; known: {sorted(OFFICIAL_NETWORKS)}")
    return OFFICIAL_NETWORKS[network]


def official_state_dict(network: str, source: str | os.PathLike | Mapping, size: int = 256) -> dict[str, torch.Tensor]:
    """The official state dict of ``network`` (section prefix removed), from a file, a folder or a read dict."""
    spec = _spec(network)
    path = "<dict>"
    if isinstance(source, Mapping):
        ckpt = source
    else:
        p = Path(source)
        if p.is_dir():
            p = find_official_file(network, p, size=size)
        path = str(p)
        ckpt = read_checkpoint(p)
    if spec.pth_key in ckpt and isinstance(ckpt[spec.pth_key], Mapping):
        return dict(ckpt[spec.pth_key])
    if spec.safetensors_prefix is not None and any(isinstance(v, torch.Tensor) for v in ckpt.values()):
        pre = spec.safetensors_prefix
        sd = {k[len(pre):]: v for k, v in ckpt.items() if k.startswith(pre)}
        if sd:
            return sd
    found = sorted({k.split(".")[0] for k in ckpt})[:12]
    raise CheckpointError(
        f"{path} does not hold the '{network}' network (looked for top-level key '{spec.pth_key}'"
        + (f" or keys starting with '{spec.safetensors_prefix}'" if spec.safetensors_prefix else "")
        + f"; found top-level names {found}). Is this the right file? Expected {spec.pth_file}"
        + (f" or {SAFETENSORS_FILE.format(size=size)}." if spec.safetensors_prefix else ".")
    )


def load_state_dict_checked(module: nn.Module, state: Mapping[str, torch.Tensor], where: str = "<dict>") -> nn.Module:
    """Strictly load ``state`` (our key names) into ``module``; a clear error lists every mismatch."""
    own = module.state_dict()
    state = dict(state)
    for k, v in state.items():
        # 0-d buffers (BatchNorm num_batches_tracked) stored as shape [1]: torch's own loader accepts them
        if k in own and own[k].dim() == 0 and v.dim() == 1 and v.numel() == 1:
            state[k] = v.reshape(())
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    bad_shape = [
        f"{k}: file {tuple(state[k].shape)} vs ours {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or bad_shape:
        def _fmt(name, xs):
            return f"\n  {name} ({len(xs)}): " + ", ".join(xs[:12]) + (" ..." if len(xs) > 12 else "") if xs else ""

        raise CheckpointError(
            f"checkpoint {where} does not fit {type(module).__name__}:"
            + _fmt("missing keys", missing)
            + _fmt("unexpected keys", unexpected)
            + _fmt("shape mismatches", bad_shape)
            + "\nCheck that the file is the right one for this network and configuration (256 vs 512, "
            "mapping 70 vs 73 channels)."
        )
    full = dict(state)
    for k, v in own.items():  # torch fills num_batches_tracked itself when missing; do so explicitly
        if k not in full:
            full[k] = v
    module.load_state_dict(full, strict=True)
    return module


def load_official(module: nn.Module, network: str, source: str | os.PathLike | Mapping, size: int = 256) -> nn.Module:
    """Load the official weights of ``network`` from ``source`` (file, folder, or read dict) into ``module``."""
    sd = official_state_dict(network, source, size=size)
    ours = {to_our_key(network, k): v for k, v in sd.items()}
    where = str(source) if not isinstance(source, Mapping) else "<dict>"
    return load_state_dict_checked(module, ours, where=f"{where} [{network}]")


def _official_tensors(network: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {to_official_key(network, k): v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _atomic_replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def write_checkpoint(obj: Mapping, path: str | os.PathLike) -> Path:
    """Write a dict of tensors and plain values that :func:`read_checkpoint` (weights-only) reads back.

    The file appears only when complete (written beside it, then renamed), so a crash never leaves half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    torch.save(dict(obj), tmp)
    _atomic_replace(tmp, path)
    return path


def save_official_pth(modules: Mapping[str, nn.Module], path: str | os.PathLike, epoch: int | None = None,
                      extra: Mapping | None = None) -> Path:
    """Save networks into one old-version official file (e.g. ``{"mapping_crop": net}`` -> mapping_00229 layout).

    All networks must share the official file (e.g. generator + kp_extractor + he_estimator in the
    facevid2vid ``.pth.tar``). ``extra`` (for example optimizer states) is stored beside them.
    """
    path = Path(path)
    files = {_spec(n).pth_file for n in modules}
    if len(files) != 1:
        raise ValueError(f"networks {list(modules)} live in different official files: {sorted(files)}")
    out: dict = {}
    for name, m in modules.items():
        out[_spec(name).pth_key] = _official_tensors(name, m)
    epochs = {_spec(n).pth_epoch for n in modules}
    if epoch is None and epochs != {None}:
        epoch = max(e for e in epochs if e is not None)
    if epoch is not None:
        out["epoch"] = int(epoch)
    if extra:
        out.update(extra)
    return write_checkpoint(out, path)


def save_official_safetensors(modules: Mapping[str, nn.Module], path: str | os.PathLike,
                              extra: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Save networks into a flat safetensors file with the official section prefixes (plus ``extra`` tensors,
    already prefixed, e.g. other sections of an existing file)."""
    from safetensors.torch import save_file

    path = Path(path)
    flat: dict[str, torch.Tensor] = dict(extra or {})
    for name, m in modules.items():
        pre = _spec(name).safetensors_prefix
        if pre is None:
            raise ValueError(f"'{name}' has no section in the official safetensors file; "
                             "save it with save_official_pth")
        for k, v in _official_tensors(name, m).items():
            flat[pre + k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    save_file(flat, str(tmp))
    _atomic_replace(tmp, path)
    return path
