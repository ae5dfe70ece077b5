"""Numeric quirks of the official SadTalker code that parity needs, each named, with where the official code does it.

Tagged ``# OFFICIAL QUIRK:`` where used, so ``grep -rn "OFFICIAL QUIRK" sadtalker_lib`` lists them all.
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Quirks of the official code, each named (added by the module owners).
# ---------------------------------------------------------------------------------------------

# --- face preprocessing quirks ---
def quad_ry_limit(width: int, height: int) -> int:
    """Upper bound for the face square's bottom edge ``ry`` in ``Preprocesser.align_face``: the image WIDTH.

    src/utils/croper.py clamps ``ry = min(max(quad[3], quad[5]), img.size[0])`` -- ``img.size[0]`` is the
    width (the x bound ``rx`` uses the same). On landscape images ``ry`` can pass the height, and numpy slicing
    then silently makes the crop shorter than ``crop_info`` says; on tall images it can clip the square early.
    Reproduced for parity (``height`` unused).
    """
    del height
    return width


# --- face-vid2vid quirks (renderer, keypoint transformation) ---
# src/facerender/modules/make_animation.py get_rotation_matrix converts degrees to radians with pi taken
# as 3.14 (``yaw / 180 * 3.14``), so every rotation is 0.05 % smaller than asked. Used by motion.get_rotation_matrix.
OFFICIAL_PI = 3.14


def keep_only_y_translation(t):
    """The translation that the official keypoint transformation actually applies: t [B, 3] with x and z zeroed.

    src/facerender/modules/make_animation.py keypoint_transformation does ``t[:, 0] = t[:, 0] * 0`` and
    ``t[:, 2] = t[:, 2] * 0`` IN PLACE on the mapping net's output, so only the vertical translation moves the
    keypoints (and the caller's ``he['t']`` is modified as a side effect). Here a copy is returned and the
    caller's tensor is left untouched; the rendered result is the same.
    """
    kept = t.new_zeros(t.shape)
    kept[:, 1] = t[:, 1]
    return kept


def spectral_norm_eval_weight(weight_orig, weight_u, weight_v):
    """The conv weight that ``torch.nn.utils.spectral_norm`` uses in EVAL mode: W / (u . (W_mat v)).

    The SPADE decoder's convs (src/facerender/modules/util.py SPADEResnetBlock, norm_G 'spadespectralinstance')
    are wrapped in spectral_norm, so the checkpoints hold ``weight_orig``, ``weight_u``, ``weight_v`` and no
    ``weight``. In eval mode torch does NOT run a power iteration: it divides by sigma = u . (W_mat v) computed
    from the STORED u and v, which is the true largest singular value only if training had converged them.
    A reimplementation must therefore keep u, v as loaded (blocks.SPADEResnetBlock wraps its convs in the same
    torch function); a module left in train mode would update u, v in place on every forward and drift from the
    official output. This function spells the eval rule out for readers and tests.
    """
    import torch

    w_mat = weight_orig.reshape(weight_orig.shape[0], -1)
    sigma = torch.dot(weight_u, torch.mv(w_mat, weight_v))
    return weight_orig / sigma


# --- audio features / ExpNet / PoseVAE quirks (audio2coeff) ---
# src/audio2exp_models/audio2exp.py Audio2Exp.test: ExpNet runs on 10 frames at a time. Frames do not
# interact (BatchNorm in eval mode), so this only bounds memory; kept for parity of the float summation.
EXPNET_CHUNK_FRAMES = 10

# src/audio2pose_models/cvae.py ENCODER.forward: ``logvar = self.linear_means(x_out)``; ``linear_logvar`` is
# built and saved in the checkpoint but never used. Only training (the KL term) sees it.
POSEVAE_LOGVAR_FROM_MEANS_LAYER = True

# src/audio2pose_models/audio2pose.py Audio2Pose.test: frame 0 is the reference frame. Its motion is set to 0
# and its mel window is dropped (``indiv_mels[:, 1:]``); only the other T - 1 frames are generated.
POSE_REFERENCE_FRAME = 0


def pose_chunk_plan(num_windows: int, seq_len: int = 32) -> list[tuple[int, int, int]]:
    """How Audio2Pose.test cuts the ``num_windows`` (= T - 1) mel windows after the reference frame.

    Returns (start, stop, keep) per decoder call, in call order (one z draw each): full chunks
    ``[i*32, (i+1)*32)`` keep all 32 outputs; a remainder ``re = n % 32 != 0`` runs ONE more chunk on the
    LAST 32 windows (``indiv_mels_use[:, -32:]``, overlapping the previous chunk) and keeps only its last
    ``re`` outputs. (src/audio2pose_models/audio2pose.py, ``div = n // seq_len``, ``re = n % seq_len``.)
    When n < 32 the last chunk has fewer than 32 windows: see POSE_SHORT_CHUNK_PAD.
    """
    div, re = divmod(num_windows, seq_len)
    plan = [(i * seq_len, (i + 1) * seq_len, seq_len) for i in range(div)]
    if re:
        plan.append((max(num_windows - seq_len, 0), num_windows, re))
    return plan


# Audio2Pose.test: a chunk with fewer than 32 audio embeddings (clips of < 33 frames) is padded IN FRONT by
# repeating its first embedding (``audio_emb[:, :1].repeat(1, pad, 1)``) up to 32.
POSE_SHORT_CHUNK_PAD = "repeat_first_in_front"

# src/test_audio2coeff.py Audio2Coeff.generate: the predicted pose (6 columns only, not the expression) is
# smoothed along time with ``savgol_filter(pose, 13, 2, axis=1)`` before it is concatenated to the 70
# coefficients that are saved.
POSE_SAVGOL_WINDOW = 13
POSE_SAVGOL_ORDER = 2


def pose_savgol_window(num_frames: int) -> int:
    """Savitzky-Golay window for a clip of ``num_frames``: 13, or the largest odd ``int((T-1)/2)*2+1`` below 13.

    (src/test_audio2coeff.py.) The official code crashes for T <= 2 (window 1 <= order 2); callers skip
    smoothing when the window is not larger than POSE_SAVGOL_ORDER.
    """
    if num_frames < POSE_SAVGOL_WINDOW:
        return int((num_frames - 1) / 2) * 2 + 1
    return POSE_SAVGOL_WINDOW


# --- 3D face model (BFM, src/face3d/models/bfm.py ParametricFaceModel) quirks ---
# Used by sadtalker_lib/morphable/{model,bfm}.py. Facts checked against fixtures/face_model.npz.
import math as _math

# BFM_model_front.mat stores every index array (tri, keypoints, point_buf, frontmask2_idx, tri_mask2) 1-based
# (MATLAB); ParametricFaceModel.__init__ subtracts 1 from each.
BFM_INDEX_BASE = 1

# The official init_lit: 0.8 is added to the DC spherical-harmonics coefficient of every colour channel, so
# gamma = 0 means "white ambient light 0.8" (ParametricFaceModel(init_lit=...), compute_color).
SH_INIT_LIT = (0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# class SH in bfm.py: band factors a_l and normalisation constants c_l of the 9-term real SH basis.
SH_A = (_math.pi, 2 * _math.pi / _math.sqrt(3.0), 2 * _math.pi / _math.sqrt(8.0))
SH_C = (1 / _math.sqrt(4 * _math.pi), _math.sqrt(3.0) / _math.sqrt(4 * _math.pi),
        3 * _math.sqrt(5.0) / _math.sqrt(12 * _math.pi))


def bfm_point_buf_to_zero_based(point_buf_1based, num_faces: int):
    """``point_buf`` [N, K] from the file (1-based face ids, 0 = empty slot) -> 0-based ids, empty -> ``num_faces``.

    bfm.py subtracts 1, so an empty slot becomes -1; compute_norm appends one zero normal after the F face
    normals and torch's negative indexing makes -1 pick exactly that zero row: empty slots add nothing. Here
    the slot points at that zero row (index F) explicitly. Vertices with more than K incident faces keep only
    the K listed (the official BFM file lists at most 8), so their normal averages those faces only.
    """
    import numpy as np

    pb = np.asarray(point_buf_1based).astype(np.int64) - BFM_INDEX_BASE
    return np.where(pb < 0, num_faces, pb)


def recenter_mean_shape(mean_shape):
    """``recenter=True`` (bfm.py __init__): subtract the per-axis mean vertex from the MEAN SHAPE only.

    mean_shape: [N, 3]. The identity / expression bases are not touched, so a face with alpha, beta != 0 is not
    centred; the official file's mean is not centred either, which is why the shift matters.
    """
    return mean_shape - mean_shape.mean(axis=0, keepdims=True)


def official_rotation(angles):
    """bfm.py compute_rotation: angles [B, 3] (x, y, z; radians) -> rot [B, 3, 3] = (Rz @ Ry @ Rx)^T.

    The TRANSPOSE is returned because the official code rotates row vectors, ``pts @ rot`` (transform): that
    is R @ p for each point p with R = Rz Ry Rx (x rotated first). Rx = [[1,0,0],[0,c,-s],[0,s,c]],
    Ry = [[c,0,s],[0,1,0],[-s,0,c]], Rz = [[c,-s,0],[s,c,0],[0,0,1]].
    """
    import torch

    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def mat(*rows):  # 9 tensors [B] -> [B, 3, 3], row-major
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    rot_x = mat(one, zero, zero, zero, torch.cos(x), -torch.sin(x), zero, torch.sin(x), torch.cos(x))
    rot_y = mat(torch.cos(y), zero, torch.sin(y), zero, one, zero, -torch.sin(y), zero, torch.cos(y))
    rot_z = mat(torch.cos(z), -torch.sin(z), zero, torch.sin(z), torch.cos(z), zero, zero, zero, one)
    return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)


def official_to_camera(vertices, camera_distance: float):
    """bfm.py to_camera: z <- camera_distance - z (the camera sits at z = d looking down -z; x, y unchanged).

    The official function does this IN PLACE on its argument: in compute_for_render that argument is the
    freshly transformed shape, so nothing leaks; in compute_for_render_woRotation it is ``face_shape`` itself,
    whose normals are then computed AFTER the flip (see ``WOROTATION_NORMALS_AFTER_TO_CAMERA``). Here a new
    tensor is returned and the caller reproduces the leak where it matters.
    """
    out = vertices.clone()
    out[..., -1] = camera_distance - vertices[..., -1]
    return out


# compute_for_render_woRotation calls to_camera(face_shape) (in place) BEFORE compute_norm(face_shape), so its
# normals are those of the z-flipped camera-space shape (cross products of a mirrored mesh: x, y components
# negated relative to the unflipped normals), and they are not rotated. Reproduced in
# MorphableModel.compute_for_render_wo_rotation.
WOROTATION_NORMALS_AFTER_TO_CAMERA = True


def official_image_rows(v, image_size: int = 224):
    """to_image gives v with y UP (no flip inside the model); save_coeff (src/face3d/models/facerecon_model.py)
    turns it into image rows with ``image_size - 1 - v``. Its own inverse."""
    return image_size - 1 - v


def official_sh_basis(normals):
    """The 9 SH terms exactly as bfm.py compute_color writes them: normals [..., 3] -> Y [..., 9].

    Order and signs: a0c0; -a1c1 ny; a1c1 nz; -a1c1 nx; a2c2 nx ny; -a2c2 ny nz; a2c2/(2 sqrt 3) (3 nz^2 - 1);
    -a2c2 nx nz; a2c2/2 (nx^2 - ny^2). Colour = (Y . (gamma + init_lit)) * texture per channel, with gamma
    read channel-major ([B, 3, 9]: coefficients 0-8 are red) and NO clamping (colours leave [0, 1]).
    """
    import torch

    a, c = SH_A, SH_C
    nx, ny, nz = normals[..., 0:1], normals[..., 1:2], normals[..., 2:3]
    return torch.cat(
        [
            a[0] * c[0] * torch.ones_like(nx),
            -a[1] * c[1] * ny,
            a[1] * c[1] * nz,
            -a[1] * c[1] * nx,
            a[2] * c[2] * nx * ny,
            -a[2] * c[2] * ny * nz,
            0.5 * a[2] * c[2] / _math.sqrt(3.0) * (3 * nz**2 - 1),
            -a[2] * c[2] * nx * nz,
            0.5 * a[2] * c[2] * (nx**2 - ny**2),
        ],
        dim=-1,
    )


# --- MappingNet / HEEstimator / regressor / facerender-data (semantics) quirks ---
# src/facerender/modules/keypoint_detector.py HEEstimator.forward returns ``yaw = self.fc_roll(out)`` and
# ``roll = self.fc_yaw(out)``: the layers named fc_yaw / fc_roll feed the opposite angles (fc_pitch is right).
# Our HEEstimator names its heads after what they predict, so KEY_MAPS["he_estimator"] swaps the two names
# (official fc_roll.* <-> our fc_yaw.*). The MappingNet (src/facerender/modules/mapping.py) has no such swap.
HE_ESTIMATOR_SWAPPED_HEADS = {"yaw": "fc_roll", "roll": "fc_yaw"}  # output angle -> official layer name


def official_camera_degrees(values, frame_num: int):
    """``--input_yaw/pitch/roll`` list -> per-frame degrees [frame_num] (float64), as ``gen_camera_pose`` does.

    src/generate_facerender_batch.py gen_camera_pose: one value is held for every frame. Several values are
    joined by straight segments at ONE common speed, (sum of |jumps|) / (frame_num - 1) degrees per frame;
    each segment is ``np.arange(start, stop, +-speed)``, so it stops one step short of its end value. The
    concatenation is then cut to frame_num, or padded with its last value. Consequences kept for parity: the
    last listed angle is never reached (``[0, 20, -10]`` over 75 frames ends at -9.73), and the frame
    count of a segment is ceil(|jump| / speed), with float rounding included.

    Where the official code divides by zero (frame_num == 1 with several values, all values equal, or two
    equal neighbours) it crashes; here a one-frame clip gets the first value, an all-equal list is held,
    and an equal-neighbour segment adds no frames (its arange is empty).
    """
    import numpy as np

    values = [float(v) for v in values]
    if not values:
        raise ValueError("the camera angle list is empty; give at least one degree value")
    if frame_num < 1:
        raise ValueError(f"frame_num must be >= 1, got {frame_num}")
    total = 0.0
    for a, b in zip(values, values[1:]):
        total += abs(b - a)
    if len(values) == 1 or frame_num == 1 or total == 0:
        return np.full(frame_num, values[0], dtype=np.float64)
    per_frame = total / (frame_num - 1)
    seq: list[float] = []
    for a, b in zip(values, values[1:]):
        if b == a:
            continue
        step = per_frame * abs(b - a) / (b - a)  # the official expression (not copysign): same float rounding
        seq.extend(np.arange(a, b, step).tolist())
    seq = seq[:frame_num] + [seq[-1]] * max(0, frame_num - len(seq))
    return np.asarray(seq, dtype=np.float64)
