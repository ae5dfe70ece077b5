"""Audio -> 3DMM motion coefficients: the glue around ExpNet and PoseVAE (official ``Audio2Coeff``).

    mel windows [B, T, 1, 80, 16] ─┬─ ExpNet(mel, beta_0, z_blink), 10 frames at a time ──► beta   [B, T, 64]
                                    └─ PoseVAE decoder per 32-frame chunk, z ~ N(0, I) ────► rho    [B, T, 6]
    coefficients = [beta | savgol_13,2(rho)]                                                       [T, 70]

Each step is a function a notebook can call on its own: :func:`predict_expression`, :func:`draw_pose_noise`,
:func:`predict_pose`, :func:`smooth_pose`, and :func:`audio_to_coefficients` running them in order.
The official code's odd choices (10-frame ExpNet chunks; the reference frame; the overlapping last pose
chunk; the front padding of short clips; savgol on the pose only) are tagged as official quirks below.
Sources: ``src/audio2exp_models/audio2exp.py``, ``src/audio2pose_models/audio2pose.py``,
``src/test_audio2coeff.py``, ``src/generate_batch.py``.

The pose noise is either drawn from a ``torch.Generator`` (or the global torch RNG, as the official code
does; one ``randn(B, 64)`` per chunk, in chunk order) or injected as a tensor [n_chunks, B, 64], e.g. the
stored draws of an official run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal
import torch

from .coeffs import EXP, MOTION_DIM, POSE
from .models.expnet import ExpNet
from .models.posevae import PoseVAE

__all__ = [
    "PosePrediction",
    "CoeffPrediction",
    "reference_coefficients",
    "predict_expression",
    "draw_pose_noise",
    "predict_pose",
    "smooth_pose",
    "audio_to_coefficients",
    "tile_sequence",
    "add_reference_motion",
    "add_reference_pose",
    "EXPNET_CHUNK_FRAMES",
    "pose_chunk_plan",
    "pose_savgol_window",
]


# ---------------------------------------------------------------------------------------------
# Official quirks of Audio2Exp / Audio2Pose / Audio2Coeff (checked against audio2exp.npz, audio2pose.npz)
# ---------------------------------------------------------------------------------------------
# OFFICIAL QUIRK: src/audio2exp_models/audio2exp.py Audio2Exp.test runs ExpNet on 10 frames at a time. Frames do
# not interact (BatchNorm in eval mode), so this only bounds memory; kept for parity of the float summation.
EXPNET_CHUNK_FRAMES = 10

# OFFICIAL QUIRK: src/audio2pose_models/audio2pose.py Audio2Pose.test: frame 0 is the reference frame. Its motion
# is set to 0 and its mel window is dropped (``indiv_mels[:, 1:]``); only the other T - 1 frames are generated.
POSE_REFERENCE_FRAME = 0

# OFFICIAL QUIRK: src/test_audio2coeff.py Audio2Coeff.generate smooths the predicted pose (6 columns only, not the
# expression) along time with ``savgol_filter(pose, 13, 2, axis=1)`` before it is concatenated and saved.
POSE_SAVGOL_WINDOW = 13
POSE_SAVGOL_ORDER = 2


def pose_chunk_plan(num_windows: int, seq_len: int = 32) -> list[tuple[int, int, int]]:
    """How Audio2Pose.test cuts the ``num_windows`` (= T - 1) mel windows after the reference frame.

    Returns (start, stop, keep) per decoder call, in call order (one z draw each).
    # OFFICIAL QUIRK: src/audio2pose_models/audio2pose.py (``div = n // seq_len``, ``re = n % seq_len``): full
    chunks ``[i*32, (i+1)*32)`` keep all 32 outputs; a remainder ``re != 0`` runs ONE more chunk on the LAST 32
    windows (``indiv_mels_use[:, -32:]``, overlapping the previous chunk) and keeps only its last ``re`` outputs.
    When n < 32 the last chunk has fewer than 32 windows (front-padded in :func:`predict_pose`).
    """
    div, re = divmod(num_windows, seq_len)
    plan = [(i * seq_len, (i + 1) * seq_len, seq_len) for i in range(div)]
    if re:
        plan.append((max(num_windows - seq_len, 0), num_windows, re))
    return plan


def pose_savgol_window(num_frames: int) -> int:
    """Savitzky-Golay window for a clip of ``num_frames``: 13, or the largest odd ``int((T-1)/2)*2+1`` below 13.

    # OFFICIAL QUIRK: src/test_audio2coeff.py. The official code crashes for T <= 2 (window 1 <= order 2); callers
    skip smoothing when the window is not larger than POSE_SAVGOL_ORDER.
    """
    if num_frames < POSE_SAVGOL_WINDOW:
        return int((num_frames - 1) / 2) * 2 + 1
    return POSE_SAVGOL_WINDOW


@dataclass
class PosePrediction:
    """PoseVAE output. motion = Delta rho (0 at the reference frame), pose_raw = rho_0 + motion,
    pose = savgol-smoothed pose_raw: each [B, T, 6]; z: the noise used, [n_chunks, B, 64]."""

    motion: torch.Tensor
    pose_raw: torch.Tensor
    pose: torch.Tensor
    z: torch.Tensor


@dataclass
class CoeffPrediction:
    """exp [B, T, 64]; pose: :class:`PosePrediction`; coeffs: the first clip's [T, 70] float32
    (= [exp | smoothed pose]), what the official code saves as ``coeff_3dmm``."""

    exp: torch.Tensor
    pose: PosePrediction
    coeffs: np.ndarray

    @property
    def coeffs_batch(self) -> torch.Tensor:
        """[B, T, 70] for every clip of the batch."""
        return torch.cat([self.exp, self.pose.pose], dim=-1)


def _as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    return x.to(dtype) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def reference_coefficients(ref, num_frames: int) -> torch.Tensor:
    """The source coefficients as the official ``ref`` batch: [B, T, 70] (one row per frame).

    Accepts [70+], [B, 70+] (repeated over T, as ``get_data`` does with ``np.repeat``) or [B, T, 70+]
    (e.g. with a reference eye-blink expression already written into the exp columns). Columns after 70
    (the 3 crop parameters of the source ``.mat``) are dropped.
    """
    r = _as_tensor(ref)
    if r.ndim == 1:
        r = r[None]
    if r.ndim == 2:
        r = r[:, None].expand(-1, num_frames, -1)
    if r.ndim != 3 or r.shape[-1] < MOTION_DIM:
        raise ValueError(f"reference coefficients must be [70], [B, 70] or [B, T, 70] (>= 70 columns), "
                         f"got {tuple(r.shape)}")
    if r.shape[1] == 1 and num_frames != 1:
        r = r.expand(-1, num_frames, -1)
    if r.shape[1] != num_frames:
        raise ValueError(f"reference coefficients have {r.shape[1]} frames, the audio {num_frames}")
    return r[..., :MOTION_DIM].contiguous()


@torch.no_grad()
def predict_expression(expnet: ExpNet, mels: torch.Tensor, ref_coeffs, blink,
                       chunk: int = EXPNET_CHUNK_FRAMES) -> torch.Tensor:
    """ExpNet over a clip (Eq. 2): mels [B, T, 1, 80, 16], ref [B, T, 70] (or [B, T, 64] / [B, 70]),
    blink [B, T, 1] -> beta [B, T, 64]. Runs ``chunk`` frames at a time like the official ``Audio2Exp.test``."""
    b, t = mels.shape[:2]
    ref = _as_tensor(ref_coeffs).to(mels.device)
    if ref.ndim == 2:
        ref = ref[:, None].expand(-1, t, -1)
    ref_exp = ref[..., EXP]  # beta_0 per frame
    ratio = _as_tensor(blink).to(mels.device).reshape(b, t, 1)
    if ref_exp.shape[:2] != (b, t):
        raise ValueError(f"ref has shape {tuple(ref.shape)}; expected [{b}, {t}, 70]")
    out = [expnet(mels[:, i:i + chunk], ref_exp[:, i:i + chunk], ratio[:, i:i + chunk]) for i in range(0, t, chunk)]
    return torch.cat(out, dim=1)


def draw_pose_noise(num_frames: int, batch: int = 1, latent_size: int = 64, seq_len: int = 32,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The PoseVAE latents for a clip of ``num_frames``: [n_chunks, B, 64], drawn in the official call order.

    With ``generator=None`` the global torch RNG is used, as the official code does (so ``torch.manual_seed``
    reproduces an official run when nothing else draws in between).
    """
    n = len(pose_chunk_plan(max(num_frames - 1, 0), seq_len))
    draws = [torch.randn(batch, latent_size, generator=generator) for _ in range(n)]
    return torch.stack(draws) if draws else torch.zeros(0, batch, latent_size)


@torch.no_grad()
def predict_pose(posevae: PoseVAE, mels: torch.Tensor, ref_coeffs, style: int | torch.Tensor = 0,
                 z: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 smooth: bool = True) -> PosePrediction:
    """PoseVAE over a clip (official ``Audio2Pose.test`` + the savgol of ``Audio2Coeff.generate``).

    mels [B, T, 1, 80, 16]; ref [B, T, 70] or [B, 70] (rho_0 = the last 6 columns of frame 0); ``style`` the
    pose style 0..45 (int or [B] long); ``z`` injected noise [n_chunks, B, 64] (or [n_chunks, 64]), else drawn
    with :func:`draw_pose_noise` from ``generator``.
    """
    cfg = posevae.config
    b, t = mels.shape[:2]
    device = mels.device
    ref = _as_tensor(ref_coeffs).to(device)
    ref_pose = (ref[:, POSE_REFERENCE_FRAME] if ref.ndim == 3 else ref)[..., POSE]  # [B, 6]
    style_ids = torch.as_tensor(style).to(torch.long).reshape(-1).expand(b)  # [B]
    if int(style_ids.min()) < 0 or int(style_ids.max()) >= cfg.num_classes:
        raise ValueError(f"pose_style must be in 0..{cfg.num_classes - 1}, got {style_ids.tolist()}")
    style_ids = style_ids.to(device)

    mels_use = mels[:, POSE_REFERENCE_FRAME + 1:]  # the reference frame's window is not used
    plan = pose_chunk_plan(mels_use.shape[1], cfg.seq_len)
    if z is None:
        z = draw_pose_noise(t, b, cfg.latent_size, cfg.seq_len, generator)  # on the CPU: the same z on any device
    z = _as_tensor(z).to(device)
    if z.ndim == 2:
        z = z[:, None].expand(-1, b, -1)
    if z.shape[0] != len(plan) or z.shape[1:] != (b, cfg.latent_size):
        raise ValueError(f"z must be [{len(plan)}, {b}, {cfg.latent_size}] for {t} frames "
                         f"({len(plan)} chunks), got {tuple(z.shape)}")

    motion = [torch.zeros(b, 1, cfg.pose_dim, dtype=ref_pose.dtype, device=device)]  # reference frame: no motion
    for k, (start, stop, keep) in enumerate(plan):
        emb = posevae.encode_audio(mels_use[:, start:stop])  # [B, <=32, 512]
        # OFFICIAL QUIRK: Audio2Pose.test pads a chunk of < 32 audio embeddings (clips of < 33 frames) IN FRONT
        # by repeating its first embedding (``audio_emb[:, :1].repeat(1, pad, 1)``) up to 32.
        if emb.shape[1] < cfg.seq_len:
            emb = torch.cat([emb[:, :1].expand(-1, cfg.seq_len - emb.shape[1], -1), emb], dim=1)
        chunk = posevae.decoder(z[k], ref_pose, emb, style_ids)  # [B, 32, 6]
        motion.append(chunk[:, -keep:])
    motion_t = torch.cat(motion, dim=1)  # [B, T, 6]
    pose_raw = ref_pose[:, None] + motion_t
    return PosePrediction(motion=motion_t, pose_raw=pose_raw, pose=smooth_pose(pose_raw) if smooth else pose_raw,
                          z=z)


def smooth_pose(pose: torch.Tensor) -> torch.Tensor:
    """Savitzky-Golay (window 13, order 2) along time of [B, T, 6] (float32, as the official ``savgol_filter``).

    Shorter clips use the largest odd window below 13; clips of 1-2 frames are returned unchanged (the
    official code fails there).
    """
    window = pose_savgol_window(pose.shape[1])
    if window <= POSE_SAVGOL_ORDER:
        return pose.clone()
    out = scipy.signal.savgol_filter(pose.detach().cpu().numpy(), window, POSE_SAVGOL_ORDER, axis=1)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(pose.device)


def audio_to_coefficients(expnet: ExpNet, posevae: PoseVAE, mels: torch.Tensor, ref_coeffs, blink,
                          pose_style: int | torch.Tensor = 0, z: torch.Tensor | None = None,
                          generator: torch.Generator | None = None) -> CoeffPrediction:
    """ExpNet + PoseVAE + smoothing: the official ``Audio2Coeff.generate`` without file I/O.

    mels [B, T, 1, 80, 16] (``AudioFeatures.batch()``); ref source coefficients ([70], [B, 70] or [B, T, 70]);
    blink [B, T, 1] (``blink.blink_ratio``). Returns exp [B, T, 64], the pose prediction and the [T, 70] coefficients.
    """
    t = mels.shape[1]
    ref = reference_coefficients(ref_coeffs, t)
    if ref.shape[0] != mels.shape[0]:
        ref = ref.expand(mels.shape[0], -1, -1)
    exp = predict_expression(expnet, mels, ref, blink)
    pose = predict_pose(posevae, mels, ref, pose_style, z=z, generator=generator)
    coeffs = torch.cat([exp, pose.pose], dim=-1)[0].detach().cpu().numpy().astype(np.float32)
    return CoeffPrediction(exp=exp, pose=pose, coeffs=coeffs)


def tile_sequence(seq: np.ndarray, num_frames: int) -> np.ndarray:
    """Repeat a reference sequence [N, k] to [num_frames, k] (whole copies, then the start), or crop it.

    The official way of stretching a reference eye-blink or pose video over the audio (``get_data``,
    ``Audio2Coeff.using_refpose``).
    """
    seq = np.asarray(seq)
    if len(seq) == 0:
        raise ValueError("reference sequence is empty")
    reps = -(-num_frames // len(seq))
    return np.concatenate([seq] * reps, axis=0)[:num_frames]


def add_reference_motion(coeffs: np.ndarray, ref: np.ndarray, columns=POSE) -> np.ndarray:
    """Add a reference sequence's motion since its first frame, ``ref[t] - ref[0]``, to ``coeffs[:, columns]``.

    coeffs [T, >= 70]; ref [N, k] (k = the number of ``columns``) or a coefficient sequence [N, 70 or 73] whose
    ``columns`` are used; tiled or cropped to T frames (:func:`tile_sequence`). The official ``using_refpose``
    convention: the reference's motion moves the target from the target's own start, not to the reference's values.
    """
    out = np.array(coeffs, copy=True)
    width = out[:1, columns].shape[1]
    ref = np.asarray(ref)
    if ref.shape[1] != width and ref.shape[1] >= MOTION_DIM:  # a coefficient file [N, 70 or 73]: its columns
        ref = ref[:, columns]
    ref = tile_sequence(ref, len(out))
    out[:, columns] += ref - ref[:1]
    return out


def add_reference_pose(coeffs: np.ndarray, ref_pose: np.ndarray) -> np.ndarray:
    """``--ref_pose``: add the reference video's pose motion (ref_pose[t] - ref_pose[0]) to coeffs [T, 70].

    ``ref_pose`` is [N, 6] or the reference video's coefficients [N, 70 or 73] (its ``coeffs.POSE`` columns are used).
    """
    return add_reference_motion(coeffs, ref_pose, POSE)
