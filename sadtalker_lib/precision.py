"""Precision policies of the renderer: ``exact`` (float32, the parity path) and ``fast``.

The networks (``models/``) hold only layers and forward; everything that changes how they compute lives here
and is applied by :class:`~sadtalker_lib.wrapper.Models`, which owns device and precision:

* ``exact`` (default): every network as loaded, float32. What the parity tests check.
* ``fast``: the face-vid2vid generator (~1.2 TFLOP per 256 px frame, ~88% convolution) computes its per-frame
  convolutions in a 16-bit float (bfloat16 on CPUs and on GPUs that have it, float16 on older GPUs). The
  source encoder (``encode_source``: once per video) stays float32: in bfloat16 it costs most of the error. The
  keypoint detector and the MappingNets (the head-pose path) stay float32: a community fork found that fp16 in
  the pose path destroys head motion (official SadTalker PR #704); they cost < 2% of a frame anyway.

A policy is a set of named techniques (``TECHNIQUES``), so that the benchmark can measure each one alone:

    fold-norms      spectral norm folded into the conv weights once (the eval-mode weight, computed once
                    instead of per call); float32, same picture
    fuse-spade      the SPADE decoder rewritten (``sadtalker_lib.fused_spade``): the SPADE hidden convs of an
                    upsampled map computed at the map's resolution (25 kernel taps instead of 144 at 256 px),
                    gamma | beta as one conv, shared instance norms, one-pass modulation; float32: the same
                    picture up to the order of float sums
    bf16-conv       the generator's convs in the 16-bit float, float32 between them: the float32 input rounded
                    on the way in, the result handed back as float32, so that the norms, residual sums, softmax,
                    warps (``grid_sample``) and the sigmoid stay float32
    bf16-act        with bf16-conv: the SPADE decoder's convs hand their 16-bit output on (to the SPADE
                    modulation, LeakyReLU and the next conv) instead of widening it to float32: about half the
                    memory traffic of the decoder's large (256 px, 256-channel) activations. The decoder's
                    residual stream stays float32 where it is float32 (after ``decoder.fc``), the instance-norm
                    statistics accumulate in float32 (PyTorch's CPU kernels), the last conv and sigmoid are float32
    autocast        ``torch.autocast`` over the generator (16-bit activations everywhere, the plain way; measured
                    for comparison: on the parity weights it loses more than the 35 dB budget, on CPU and on an
                    H200: 29.9 dB at 256 px)
    channels-last   conv inputs and weights in channels-last layout (measured slower on an H200: 86 vs 99
                    frames/s at 256 px in fp32; not the CPU bf16 path)
    flush-subnormals
                    the dense-motion hourglass input (Gaussian heatmap differences of the keypoints, exp(-d^2 /
                    0.02)) has ~1.5% subnormal floats (|x| < 1.2e-38) in its Gaussian tails; x86 CPUs compute with
                    subnormal operands at a fraction of their speed, so the hourglass's two full-resolution 3-D
                    convs ran ~3.2x slower on the real input than on random data (measured with oneDNN capped at
                    AVX2: 1.31 s vs 0.42 s for the 112-channel 3x3x3 conv of 2 frames). They are set to zero first;
                    on the parity weights the convs' outputs are bit-identical (float32, same picture)
    winograd        the generator's wide 3x3 convs (``winograd.worthwhile``: >= 64 in, >= 128 out channels; the
                    SPADE decoder's, ``third``) in the Winograd F(4x4, 3x3) form (``sadtalker_lib.winograd``): 4x
                    fewer multiply-adds, ~2e-6 relative difference; float32, for CPUs without native bfloat16
                    (with bf16-conv the convs are bfloat16)
    fft-conv        the dense-motion network's 7x7x7 ``mask`` conv by FFT (``sadtalker_lib.fft_conv``): in-plane
                    products in the frequency domain over overlap-save tiles (0.44 s instead of 1.00 s for 2 frames,
                    AVX2 cap); float32, ~4e-6 relative difference, for CPUs without native bfloat16
    compile         ``torch.compile`` of the generator's render (long first call: ~23 s on an H200, then 1.85x
                    fast alone there: benchmarks/results/gpu.md; not in ``fast``). On the 2-core CPU
                    with inductor freezing (prepacked oneDNN weights, fused pointwise ops) over bf16-conv: ~9 min
                    to compile under load, ~1.06x faster afterwards: not part of the CPU ``fast``

``FAST_TECHNIQUES`` holds the CPU / GPU choices (measured in ``benchmarks/fast_mode.py``, table in
benchmarks/results/fast_mode.md). The CPU choice depends on the CPU (:func:`native_bf16_cpu`): bfloat16 convs are
fast only where oneDNN has native bfloat16 (AVX512-BF16 or AMX). Elsewhere (an AVX2-only CPU, e.g. AMD EPYC
Zen 3) a bfloat16 conv falls back to a reference kernel, measured ~290x slower than float32 (a 256-channel 3x3
conv at 64x64: 17 s vs 0.06 s), so ``fast`` is float32 there (``cpu-float32``): cheaper arithmetic for the same
picture (Winograd and FFT convolutions, subnormals flushed) instead of fewer bits. Measured on a 2-core Xeon with
oneDNN and MKL capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``, the stand-in for an
AVX2-only CPU; benchmarks/results/fast_mode-avx2-cap.md): 2.01x the official frames/s (rounds 1.88-2.07x) at 99.3
dB against exact, where fold-norms + fuse-spade alone reached 1.17x.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .fft_conv import FFTConv, fft_worthwhile
from .fused_spade import FusedSPADEDecoder
from .winograd import WinogradConv2d, worthwhile

__all__ = ["PRECISIONS", "TECHNIQUES", "FAST_TECHNIQUES", "PrecisionPolicy", "LowPrecisionConv", "resolve",
           "convert_network", "low_precision_dtype", "FlushSubnormals", "auto_batch_size", "native_bf16_cpu",
           "fast_techniques"]

PRECISIONS = ("exact", "fast")
TECHNIQUES = ("fold-norms", "fuse-spade", "flush-subnormals", "winograd", "fft-conv", "bf16-conv", "bf16-act",
              "autocast", "channels-last", "compile")
# device type -> techniques of ``fast`` (the choice measured in benchmarks/results/fast_mode.md and, for cuda on an
# H200, gpu.md: channels-last was slower there, compile pays only after a ~23 s first call)
FAST_TECHNIQUES = {"cpu": ("fold-norms", "fuse-spade", "bf16-conv", "bf16-act"),  # CPUs with native bfloat16
                   # CPUs without it: float32, the same picture up to the order of float sums
                   "cpu-float32": ("fold-norms", "fuse-spade", "flush-subnormals", "winograd", "fft-conv"),
                   "cuda": ("fold-norms", "bf16-conv")}
# networks converted by a fast policy; the pose path (kp_detector, mapping nets) stays float32
LOW_PRECISION_NETWORKS = ("generator",)
# generator convs that bf16-conv keeps float32: the two that turn the warped volume into the decoder input (which
# is also the SPADE segmentation map of every decoder block) and the decoder's first conv. Measured on the parity
# weights at 256 px: one frame with perturbed keypoints, all convs in bfloat16 33.7 dB against exact, third /
# fourth kept float32 37.5 dB, decoder.fc kept 35.2 dB (no other group > 34 dB); on the benchmark's driven frames
# (benchmarks/fast_mode.py) third / fourth kept 33.9 dB, + decoder.fc 35.4 dB. They cost ~2% of the FLOPs.
GENERATOR_FLOAT32_CONVS = ("third.conv", "fourth", "decoder.fc")
# generator convs of ``encode_source`` (qualified-name prefixes): bf16-conv leaves them float32 always. The
# appearance volume is computed once per video, so they cost nothing per frame, and in bfloat16 they cost most of
# the error: on the parity weights (4 driven frames, 256 px) fast with the encoder in bfloat16 35.6 dB against
# exact, with the encoder in float32 41.8 dB.
SOURCE_ENCODER_PREFIXES = ("first.", "down_blocks.", "second", "resblocks_3d.")
# convs of ``fuse-spade`` whose output only feeds another converted conv (the SPADE hidden maps): their 16-bit
# output is handed on as it is under bf16-conv (the next conv would round it to the same values)
LOW_PRECISION_HIDDEN_MARK = ".shared_"
# generator convs whose 16-bit output bf16-act hands on as it is: the SPADE decoder's, except its last conv
# (``decoder.conv_img``, whose output goes through the float32 sigmoid)
LOW_PRECISION_OUTPUT_PREFIX = "decoder."
LOW_PRECISION_OUTPUT_EXCEPT = ("decoder.conv_img",)


def native_bf16_cpu() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN sees AVX512-BF16 or AMX). oneDNN's ISA cap
    (``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``, e.g. ``AVX2``, which the benchmarks use to measure an AVX2-only
    CPU on a newer one) is honoured: a cap below AVX512_CORE_BF16 means no native bfloat16."""
    import os

    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap and cap not in ("ALL", "DEFAULT") and "BF16" not in cap and "AMX" not in cap:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bfloat16 either
        return False


def fast_techniques(device: torch.device | str = "cpu", native_bf16: bool | None = None) -> tuple[str, ...]:
    """The techniques of ``fast`` on ``device``: ``FAST_TECHNIQUES["cuda"]`` on a GPU; on a CPU
    ``FAST_TECHNIQUES["cpu"]`` where bfloat16 is native (``native_bf16``, default :func:`native_bf16_cpu`),
    else ``FAST_TECHNIQUES["cpu-float32"]``."""
    device = torch.device(device)
    if device.type == "cuda":
        return FAST_TECHNIQUES["cuda"]
    native = native_bf16_cpu() if native_bf16 is None else native_bf16
    return FAST_TECHNIQUES["cpu" if native else "cpu-float32"]


def low_precision_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on CPUs and on GPUs that support it, else float16 (on a GPU only: float16 convs on a CPU have no
    fast kernels). Without CUDA, a ``cuda`` policy built for testing on the CPU gets bfloat16."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@dataclass(frozen=True)
class PrecisionPolicy:
    """How the renderer computes. name: ``exact`` / ``fast`` (or ``custom`` for a technique subset);
    techniques: a subset of ``TECHNIQUES``; dtype: the 16-bit float of ``bf16-conv`` / ``autocast``;
    float32_convs: generator convs (qualified names) that ``bf16-conv`` leaves in float32."""

    name: str = "exact"
    techniques: tuple[str, ...] = ()
    dtype: torch.dtype = torch.bfloat16
    float32_convs: tuple[str, ...] = GENERATOR_FLOAT32_CONVS

    def __post_init__(self):
        unknown = set(self.techniques) - set(TECHNIQUES)
        if unknown:
            raise ValueError(f"unknown precision techniques {sorted(unknown)}; known: {', '.join(TECHNIQUES)}")
        if "bf16-act" in self.techniques and "bf16-conv" not in self.techniques:
            raise ValueError("'bf16-act' changes what the 'bf16-conv' convs output: it needs 'bf16-conv'")
        if "bf16-conv" in self.techniques and "autocast" in self.techniques:
            raise ValueError("'bf16-conv' and 'autocast' are two ways of doing the same thing: pick one")
        for t in ("winograd", "fft-conv"):
            if t in self.techniques and {"bf16-conv", "autocast"} & set(self.techniques):
                raise ValueError(f"{t!r} is a float32 technique: it cannot be combined with 'bf16-conv' / 'autocast'")
        if self.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"the low-precision dtype must be bfloat16 or float16, got {self.dtype}")

    @property
    def exact(self) -> bool:
        return not self.techniques

    def label(self) -> str:
        return self.name if self.name != "custom" else "+".join(self.techniques)

    @contextlib.contextmanager
    def autocast(self, network: str, device: torch.device):
        """The autocast region of ``network``'s forward (a no-op unless the ``autocast`` technique is on)."""
        if "autocast" in self.techniques and network in LOW_PRECISION_NETWORKS:
            with torch.autocast(device.type, dtype=self.dtype):
                yield
        else:  # leaves any autocast region of the caller as it is
            yield


def resolve(precision: "str | PrecisionPolicy", device: torch.device | str = "cpu") -> PrecisionPolicy:
    """``"exact"`` / ``"fast"`` (or a ready policy) -> the :class:`PrecisionPolicy` for ``device``."""
    if isinstance(precision, PrecisionPolicy):
        return precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} (or a PrecisionPolicy), got {precision!r}")
    device = torch.device(device)
    if precision == "exact":
        return PrecisionPolicy("exact")
    return PrecisionPolicy("fast", fast_techniques(device), low_precision_dtype(device))


class LowPrecisionConv(nn.Module):
    """A Conv2d / Conv3d computed in a 16-bit float: the input [B, C, ...] rounded to ``dtype``, the
    weights stored in ``dtype`` (converted once), the output [B, C', ...] returned as float32 (default) or,
    with ``float32_output=False``, left in ``dtype``.

    Keeping the output float32 leaves every operation between convolutions (norms, residual sums, warps) at
    full precision; only the conv operands are rounded (8 mantissa bits for bfloat16).
    """

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, dtype: torch.dtype = torch.bfloat16,
                 channels_last: bool = False, float32_output: bool = True):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"only zero-padded convs are converted, got padding_mode={conv.padding_mode!r}")
        self.conv3d = isinstance(conv, nn.Conv3d)
        fmt = (torch.channels_last_3d if self.conv3d else torch.channels_last) if channels_last else None
        self.memory_format = fmt
        w = conv.weight.detach().to(dtype)
        self.register_buffer("weight", w.contiguous(memory_format=fmt) if fmt else w.contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.dtype = dtype
        self.float32_output = float32_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        fn = F.conv3d if self.conv3d else F.conv2d
        y = fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return y.float() if self.float32_output else y

    def extra_repr(self) -> str:
        return (f"{tuple(self.weight.shape)}, dtype={self.dtype}, channels_last={self.memory_format is not None}, "
                f"float32_output={self.float32_output}")


class FlushSubnormals(nn.Module):
    """``module(x)`` with the subnormal floats of ``x`` (0 < |x| < ``finfo.tiny``) set to zero first (the
    ``flush-subnormals`` technique; x86 CPUs compute with subnormal operands at a fraction of their speed)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.masked_fill(x.abs() < torch.finfo(x.dtype).tiny, 0.0)
        return self.module(x)


def _replace_modules(module: nn.Module, wanted, replacement) -> None:
    """Every submodule ``m`` of ``module`` with ``wanted(m)`` -> ``replacement(m)``, in place."""
    for name, child in list(module.named_modules()):
        if name and wanted(child):
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, replacement(child))


def _fold_spectral_norm(module: nn.Module) -> None:
    """Replace every spectral-norm reparametrisation by its eval-mode weight (computed once, as eval does)."""
    for sub in module.modules():
        hooks = [h for h in sub._forward_pre_hooks.values() if type(h).__name__ == "SpectralNorm"]
        if hooks:
            nn.utils.remove_spectral_norm(sub)


def _channels_last(module: nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            sub.to(memory_format=torch.channels_last)
        elif isinstance(sub, nn.Conv3d):
            sub.to(memory_format=torch.channels_last_3d)


def _replace_convs(module: nn.Module, dtype: torch.dtype, channels_last: bool, keep: tuple[str, ...] = (),
                   low_output: bool = False) -> None:
    """Every zero-padded Conv2d / Conv3d of ``module`` -> :class:`LowPrecisionConv`, except the qualified names
    in ``keep``; with ``low_output``, the decoder's convs (``LOW_PRECISION_OUTPUT_PREFIX``) keep 16-bit outputs."""
    for name, child in list(module.named_modules()):
        if (type(child) in (nn.Conv2d, nn.Conv3d) and child.padding_mode == "zeros" and name not in keep
                and not name.startswith(SOURCE_ENCODER_PREFIXES)):
            parent, _, leaf = name.rpartition(".")
            low = (low_output and name.startswith(LOW_PRECISION_OUTPUT_PREFIX)
                   and name not in LOW_PRECISION_OUTPUT_EXCEPT) or LOW_PRECISION_HIDDEN_MARK in name
            setattr(module.get_submodule(parent) if parent else module, leaf,
                    LowPrecisionConv(child, dtype, channels_last, float32_output=not low))


def convert_network(name: str, module: nn.Module | None, policy: PrecisionPolicy) -> nn.Module | None:
    """The network ``name`` (a key of ``wrapper.NETWORKS``) as ``policy`` runs it: a converted deep copy (the
    given module is left as it is), or the module itself when nothing applies (exact, pose-path networks)."""
    if module is None or policy.exact or name not in LOW_PRECISION_NETWORKS or not isinstance(module, nn.Module):
        return module
    if module.training:
        raise ValueError(f"{name} is in training mode: precision conversions are for inference (.eval() first)")
    module = copy.deepcopy(module)
    t = policy.techniques
    if {"fold-norms", "bf16-conv", "fuse-spade", "winograd", "fft-conv"} & set(t):  # converted convs: no spectral norm
        _fold_spectral_norm(module)
    if "fuse-spade" in t and hasattr(module, "decoder"):
        module.decoder = FusedSPADEDecoder(module.decoder)
    if "flush-subnormals" in t and hasattr(module, "dense_motion_network"):
        dense = module.dense_motion_network
        dense.hourglass = FlushSubnormals(dense.hourglass)
    if "winograd" in t:  # the wide 3x3 convs
        _replace_modules(module, worthwhile, WinogradConv2d)
    if "fft-conv" in t and hasattr(module, "dense_motion_network"):  # its 7x7x7 mask conv
        _replace_modules(module.dense_motion_network, fft_worthwhile, FFTConv)
    if "bf16-conv" in t:
        _replace_convs(module, policy.dtype, "channels-last" in t, policy.float32_convs, "bf16-act" in t)
    elif "channels-last" in t:
        _channels_last(module)
    if "compile" in t:
        module.render = torch.compile(module.render, dynamic=False)
    return module


def auto_batch_size(device: torch.device | str, size: int, *, free_bytes: int | None = None,
                    bytes_per_frame_256: float = 1.5e9, cap: int = 32) -> int:
    """Frames per generator call: 2 on a CPU (larger batches do not speed up the convolutions there); on a GPU
    as many as fit in ``free_bytes`` (default: the device's free memory) at ``bytes_per_frame_256`` per 256 px
    frame (activation peak of the exact render, scaled with the pixel count), capped at ``cap``."""
    device = torch.device(device)
    if device.type != "cuda" and free_bytes is None:
        return 2
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    per_frame = bytes_per_frame_256 * (size / 256) ** 2
    return int(max(1, min(cap, 0.8 * free_bytes // per_frame)))
