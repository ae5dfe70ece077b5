"""The 3D morphable face model (paper Sec. 3.1, Eq. 1) and the camera of the deep 3D reconstruction setting.

    S = S_mean + U_id alpha + U_exp beta          alpha [B, 80], beta [B, 64]              (Eq. 1)
    T = T_mean + U_tex delta                      delta [B, 80]      (albedo, 0-255 in the bases)
    colour = (Y(n) . (gamma + init_lit)) * T / 255  gamma [B, 27]    (9 SH terms x RGB)
    p_cam = R(r) S + t, then z <- d - z          r [B, 3] radians, t [B, 3]
    (u, v) = f (x, y) / z + c                    f = 1015, c = 112, d = 10  (224 px, v points UP)

:class:`MorphableModel` holds the arrays of any such model (the Basel Face Model through ``bfm.load_bfm``,
the offline stand-in ``default.DefaultMorphableModel``) as buffers and implements every step as a method,
mirroring ``src/face3d/models/bfm.py`` ``ParametricFaceModel`` so that ``compute_for_render`` reproduces the
official outputs (tests/test_morphable_bfm_parity.py). The official code's odd conventions (the transposed
rotation, the in-place camera flip, the SH signs) are tagged as official quirks below.

Coefficient layouts (official): 257 = id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans 3 (net_recon
output, ``split_coeff``); 70 = exp 64 | angle 3 | trans 3 (what SadTalker animates); 73 = 70 | s, tx, ty (the
source ``.mat`` adds the crop parameters ``trans_params[2:]`` of ``align_img``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


__all__ = [
    "ID_DIM",
    "EXP_DIM",
    "TEX_DIM",
    "ANGLE_DIM",
    "GAMMA_DIM",
    "TRANS_DIM",
    "NUM_LANDMARKS",
    "COEFF_257_SLICES",
    "PerspectiveCamera",
    "split_coeff",
    "coeffs_257",
    "coeffs_70",
    "coeffs_73",
    "compute_point_buf",
    "MorphableModel",
    "SH_INIT_LIT",
    "official_image_rows",
    "official_rotation",
    "official_sh_basis",
    "official_to_camera",
]

# ---------------------------------------------------------------------------------------------
# Coefficient layouts (src/face3d/models/bfm.py split_coeff; src/utils/preprocess.py CropAndExtract.generate)
# ---------------------------------------------------------------------------------------------
from ..coeffs import (  # noqa: E402  (the layouts live in coeffs.py; re-exported here)
    ANGLE_DIM, COEFF_257_SLICES, EXP_DIM, GAMMA_DIM, ID_DIM, NUM_LANDMARKS, TEX_DIM, TRANS_DIM,
)


# ---------------------------------------------------------------------------------------------
# Official conventions of src/face3d/models/bfm.py ParametricFaceModel (checked against fixtures/face_model.npz)
# ---------------------------------------------------------------------------------------------
# OFFICIAL QUIRK: bfm.py ParametricFaceModel(init_lit=...), compute_color: 0.8 is added to the DC spherical-
# harmonics coefficient of every colour channel, so gamma = 0 means "white ambient light 0.8". (bfm.py reads it too.)
SH_INIT_LIT = (0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# class SH in bfm.py: band factors a_l and normalisation constants c_l of the 9-term real SH basis.
SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi),
        3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))

# OFFICIAL QUIRK: bfm.py compute_for_render_woRotation calls to_camera(face_shape) (in place) BEFORE
# compute_norm(face_shape), so its normals are those of the z-flipped camera-space shape (x, y components negated
# relative to the unflipped normals), and they are not rotated. Reproduced in compute_for_render_wo_rotation.
WOROTATION_NORMALS_AFTER_TO_CAMERA = True


def official_rotation(angles: torch.Tensor) -> torch.Tensor:
    """bfm.py compute_rotation: angles [B, 3] (x, y, z; radians) -> rot [B, 3, 3] = (Rz @ Ry @ Rx)^T.

    # OFFICIAL QUIRK: the TRANSPOSE is returned because the official code rotates row vectors, ``pts @ rot``
    (transform): that is R @ p for each point p with R = Rz Ry Rx (x rotated first).
    """
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def mat(*rows):  # 9 tensors [B] -> [B, 3, 3], row-major
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    rot_x = mat(one, zero, zero, zero, torch.cos(x), -torch.sin(x), zero, torch.sin(x), torch.cos(x))
    rot_y = mat(torch.cos(y), zero, torch.sin(y), zero, one, zero, -torch.sin(y), zero, torch.cos(y))
    rot_z = mat(torch.cos(z), -torch.sin(z), zero, torch.sin(z), torch.cos(z), zero, zero, zero, one)
    return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)


def official_to_camera(vertices: torch.Tensor, camera_distance: float) -> torch.Tensor:
    """bfm.py to_camera: z <- camera_distance - z (the camera sits at z = d looking down -z; x, y unchanged).

    # OFFICIAL QUIRK: the official function does this IN PLACE on its argument (see
    ``WOROTATION_NORMALS_AFTER_TO_CAMERA`` for where that leaks). Here a new tensor is returned and the caller
    reproduces the leak where it matters.
    """
    out = vertices.clone()
    out[..., -1] = camera_distance - vertices[..., -1]
    return out


def official_image_rows(v, image_size: int = 224):
    """to_image gives v with y UP (no flip inside the model); image rows are ``image_size - 1 - v``. Its own inverse.

    # OFFICIAL QUIRK: src/face3d/models/facerecon_model.py save_coeff does the flip, not the model. (Also used by
    morphable/render.py and morphable/fit.py, which import it from here.)
    """
    return image_size - 1 - v


def official_sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 SH terms exactly as bfm.py compute_color writes them: normals [..., 3] -> Y [..., 9].

    # OFFICIAL QUIRK: order and signs: a0c0; -a1c1 ny; a1c1 nz; -a1c1 nx; a2c2 nx ny; -a2c2 ny nz;
    a2c2/(2 sqrt 3) (3 nz^2 - 1); -a2c2 nx nz; a2c2/2 (nx^2 - ny^2). Colour = (Y . (gamma + init_lit)) * texture
    per channel, with gamma read channel-major ([B, 3, 9]: coefficients 0-8 are red) and NO clamping.
    """
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
            0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * nz**2 - 1),
            -a[2] * c[2] * nx * nz,
            0.5 * a[2] * c[2] * (nx**2 - ny**2),
        ],
        dim=-1,
    )


def split_coeff(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """[..., 257] -> dict id [..., 80], exp [..., 64], tex [..., 80], angle [..., 3], gamma [..., 27],
    trans [..., 3]."""
    if coeffs.shape[-1] != 257:
        raise ValueError(f"expected 257 coefficients (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3), "
                         f"got {coeffs.shape[-1]}")
    return {k: coeffs[..., s] for k, s in COEFF_257_SLICES.items()}


def coeffs_257(*, exp, angle, trans, id=None, tex=None, gamma=None) -> torch.Tensor:
    """Assemble [..., 257]; missing groups are zero (gamma = 0 is the official default light ``init_lit``)."""
    lead = exp.shape[:-1]
    parts = {"id": id, "exp": exp, "tex": tex, "angle": angle, "gamma": gamma, "trans": trans}
    out = []
    for k, s in COEFF_257_SLICES.items():
        v = parts[k]
        out.append(exp.new_zeros(*lead, s.stop - s.start) if v is None else v.expand(*lead, s.stop - s.start))
    return torch.cat(out, dim=-1)


def coeffs_70(c257: torch.Tensor) -> torch.Tensor:
    """[..., 257] -> the 70 motion coefficients exp | angle | trans that SadTalker animates."""
    d = split_coeff(c257)
    return torch.cat([d["exp"], d["angle"], d["trans"]], dim=-1)


def coeffs_73(c257: torch.Tensor, crop_params: torch.Tensor) -> torch.Tensor:
    """[..., 257] and crop parameters [..., 3] = (s, tx, ty) (``align_img`` trans_params[2:]) -> [..., 73]."""
    return torch.cat([coeffs_70(c257), crop_params.to(c257)], dim=-1)


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerspectiveCamera:
    """The pinhole camera of Deep3DFaceRecon at 224 px (src/face3d/models/bfm.py defaults).

    The camera sits at z = ``distance`` looking down -z; ``to_camera`` maps z -> distance - z, so a vertex at
    the origin is 10 units in front of it. Pixels: u = focal x / z + center, v = focal y / z + center, with v
    pointing UP (image rows are ``image_size - 1 - v``, official_image_rows).
    """

    focal: float = 1015.0
    center: float = 112.0
    distance: float = 10.0
    image_size: int = 224

    def projection_matrix(self) -> np.ndarray:
        """float32 [3, 3], stored transposed as the official ``persc_proj`` so that ``p @ P`` projects rows p."""
        k = np.array([[self.focal, 0, self.center], [0, self.focal, self.center], [0, 0, 1]], np.float32)
        return k.T.copy()


def compute_point_buf(faces: np.ndarray, num_vertices: int, max_faces: int | None = None) -> np.ndarray:
    """For each vertex the faces it belongs to: [N, K] int64, padded with ``len(faces)`` (the zero-normal row).

    ``max_faces`` truncates to the first K faces per vertex (the official BFM file keeps 8); None keeps all.
    """
    faces = np.asarray(faces, np.int64)
    lists: list[list[int]] = [[] for _ in range(num_vertices)]
    for f, tri in enumerate(faces):
        for v in tri:
            lists[v].append(f)
    k = max(len(x) for x in lists) if max_faces is None else max_faces
    out = np.full((num_vertices, max(k, 1)), len(faces), np.int64)
    for v, fl in enumerate(lists):
        fl = fl[:k]
        out[v, : len(fl)] = fl
    return out


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class MorphableModel(nn.Module):
    """A linear 3D face model with the official camera, lighting and landmark projection.

    Arrays (all stored as buffers, so ``.to(device)`` moves them):
        mean_shape [N, 3] (already recentred if the source asks for it), id_base [3N, 80], exp_base [3N, 64]
        (interleaved xyz rows: vertex i is rows 3i..3i+2), mean_tex [3N] (0-255), tex_base [3N, 80],
        faces [F, 3] (0-based), point_buf [N, K] (0-based face ids, ``F`` = empty slot), keypoints [68]
        (0-based vertex ids of the 68 landmarks).
    Methods follow the official ParametricFaceModel step by step; ``project_landmarks`` is the cheap
    differentiable path (68 vertices only) used by fitting and the landmark losses (the R_d of Fig. 3).
    """

    def __init__(
        self,
        *,
        mean_shape,
        id_base,
        exp_base,
        mean_tex,
        tex_base,
        faces,
        keypoints,
        point_buf=None,
        camera: PerspectiveCamera = PerspectiveCamera(),
        init_lit=SH_INIT_LIT,
        name: str = "morphable model",
    ):
        super().__init__()
        mean_shape = np.array(mean_shape, np.float32).reshape(-1, 3)  # copies: buffers own their memory
        n = mean_shape.shape[0]
        id_base, exp_base = np.array(id_base, np.float32), np.array(exp_base, np.float32)
        mean_tex, tex_base = np.array(mean_tex, np.float32).reshape(-1), np.array(tex_base, np.float32)
        faces, keypoints = np.array(faces, np.int64), np.array(keypoints, np.int64).reshape(-1)
        assert id_base.shape == (3 * n, ID_DIM), f"id_base must be [3N={3 * n}, {ID_DIM}], got {id_base.shape}"
        assert exp_base.shape == (3 * n, EXP_DIM), f"exp_base must be [3N={3 * n}, {EXP_DIM}], got {exp_base.shape}"
        assert mean_tex.shape == (3 * n,), f"mean_tex must hold 3N={3 * n} values, got {mean_tex.shape}"
        assert tex_base.shape == (3 * n, TEX_DIM), f"tex_base must be [3N={3 * n}, {TEX_DIM}], got {tex_base.shape}"
        assert faces.ndim == 2 and faces.shape[1] == 3, f"faces must be [F, 3], got {faces.shape}"
        assert faces.min() >= 0 and faces.max() < n, "faces must hold 0-based vertex ids < N"
        assert keypoints.shape == (NUM_LANDMARKS,), \
            f"keypoints must be {NUM_LANDMARKS} vertex ids, got {keypoints.shape}"
        assert keypoints.min() >= 0 and keypoints.max() < n, "keypoints must hold 0-based vertex ids < N"
        if point_buf is None:
            point_buf = compute_point_buf(faces, n)
        point_buf = np.array(point_buf, np.int64)
        assert point_buf.shape[0] == n and point_buf.min() >= 0 and point_buf.max() <= len(faces), (
            f"point_buf must be [N={n}, K] with face ids in 0..F={len(faces)} (F = empty slot)"
        )
        self.camera = camera
        self.name = name
        self.register_buffer("mean_shape", torch.from_numpy(mean_shape))
        self.register_buffer("id_base", torch.from_numpy(id_base))
        self.register_buffer("exp_base", torch.from_numpy(exp_base))
        self.register_buffer("mean_tex", torch.from_numpy(mean_tex))
        self.register_buffer("tex_base", torch.from_numpy(tex_base))
        self.register_buffer("faces", torch.from_numpy(faces))
        self.register_buffer("point_buf", torch.from_numpy(point_buf))
        self.register_buffer("keypoints", torch.from_numpy(keypoints))
        self.register_buffer("persc_proj", torch.from_numpy(camera.projection_matrix()))
        self.register_buffer("init_lit", torch.tensor(init_lit, dtype=torch.float32).reshape(1, 1, 9))
        # the 68 landmark rows of the bases, for the cheap landmark path
        rows = (3 * keypoints[:, None] + np.arange(3)[None]).reshape(-1)
        self.register_buffer("_kp_mean", torch.from_numpy(mean_shape[keypoints].copy()), persistent=False)
        self.register_buffer("_kp_id", torch.from_numpy(id_base[rows].copy()), persistent=False)
        self.register_buffer("_kp_exp", torch.from_numpy(exp_base[rows].copy()), persistent=False)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def mean_landmarks(self) -> torch.Tensor:
        """The 68 landmark vertices of the mean shape [68, 3] (model space)."""
        return self._kp_mean

    def extra_repr(self) -> str:
        return f"name={self.name!r}, vertices={self.num_vertices}, faces={self.num_faces}, camera={self.camera}"

    # -- geometry ----------------------------------------------------------------------------
    def compute_shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """Eq. 1: alpha [B, 80], beta [B, 64] -> vertices [B, N, 3] (model space, y up, +z toward the camera)."""
        b = id_coeff.shape[0]
        id_part = torch.einsum("ij,aj->ai", self.id_base, id_coeff)  # [B, 3N]
        exp_part = torch.einsum("ij,aj->ai", self.exp_base, exp_coeff)
        shape = id_part + exp_part + self.mean_shape.reshape(1, -1)
        return shape.reshape(b, -1, 3)

    def compute_texture(self, tex_coeff: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """delta [B, 80] -> albedo [B, N, 3] RGB, in [0, 1] when ``normalize`` (the bases are 0-255)."""
        b = tex_coeff.shape[0]
        tex = torch.einsum("ij,aj->ai", self.tex_base, tex_coeff) + self.mean_tex.reshape(1, -1)
        if normalize:
            tex = tex / 255.0
        return tex.reshape(b, -1, 3)

    def compute_norm(self, shape: torch.Tensor) -> torch.Tensor:
        """Vertex normals [B, N, 3]: face normals cross(v1 - v2, v2 - v3), normalised, summed over ``point_buf``."""
        v1, v2, v3 = (shape[:, self.faces[:, i]] for i in range(3))
        face_norm = F.normalize(torch.cross(v1 - v2, v2 - v3, dim=-1), dim=-1, p=2)
        face_norm = torch.cat([face_norm, face_norm.new_zeros(face_norm.shape[0], 1, 3)], dim=1)  # row F = empty slot
        return F.normalize(face_norm[:, self.point_buf].sum(dim=2), dim=-1, p=2)

    def compute_color(self, texture: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """SH lighting: albedo [B, N, 3], (rotated) normals [B, N, 3], gamma [B, 27] -> colour [B, N, 3], unclamped."""
        b = gamma.shape[0]
        g = (gamma.reshape(b, 3, 9) + self.init_lit).permute(0, 2, 1)  # [B, 9, 3], channel-major gamma
        y = official_sh_basis(normals)  # [B, N, 9]
        r, gg, bb = (y @ g[..., i : i + 1] for i in range(3))
        return torch.cat([r, gg, bb], dim=-1) * texture

    def compute_rotation(self, angles: torch.Tensor) -> torch.Tensor:
        """angles [B, 3] (radians; x = pitch, y = yaw, z = roll) -> [B, 3, 3] applied as ``pts @ rot``."""
        return official_rotation(angles)

    def transform(self, shape: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """[B, N, 3] @ rot [B, 3, 3] + trans [B, 3]."""
        return shape @ rot + trans.unsqueeze(1)

    def to_camera(self, shape: torch.Tensor) -> torch.Tensor:
        """z <- camera distance - z (returns a new tensor; the official one edits in place)."""
        return official_to_camera(shape, self.camera.distance)

    def to_image(self, vertices_cam: torch.Tensor) -> torch.Tensor:
        """Camera-space [B, N, 3] -> pixels [B, N, 2] (u right, v UP; rows = size - 1 - v)."""
        proj = vertices_cam @ self.persc_proj
        return proj[..., :2] / proj[..., 2:]

    def get_landmarks(self, proj: torch.Tensor) -> torch.Tensor:
        """[B, N, 2] -> the 68 landmarks [B, 68, 2]."""
        return proj[:, self.keypoints]

    # -- the cheap landmark path (R_d) -----------------------------------------------------
    def project_landmarks(
        self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor, angle: torch.Tensor, trans: torch.Tensor
    ) -> torch.Tensor:
        """The 68 projected landmarks [B, 68, 2] (v up) from alpha [B, 80], beta [B, 64], angle [B, 3], trans [B, 3].

        Same numbers as ``compute_for_render(...)[3]`` but only the 68 landmark vertices are formed, so it is
        cheap enough for per-frame losses and fitting; differentiable in every input.
        """
        b = exp_coeff.shape[0]
        pts = (id_coeff @ self._kp_id.T + exp_coeff @ self._kp_exp.T).reshape(b, -1, 3) + self._kp_mean
        cam = self.to_camera(self.transform(pts, self.compute_rotation(angle), trans))
        return self.to_image(cam)

    # -- everything at once ------------------------------------------------------------------
    def compute_for_render(self, coeffs: torch.Tensor):
        """coeffs [B, 257] -> (vertices in camera space [B, N, 3], albedo [B, N, 3], colour [B, N, 3],
        landmarks [B, 68, 2])."""
        c = split_coeff(coeffs)
        shape = self.compute_shape(c["id"], c["exp"])
        rot = self.compute_rotation(c["angle"])
        vertex = self.to_camera(self.transform(shape, rot, c["trans"]))
        landmark = self.get_landmarks(self.to_image(vertex))
        texture = self.compute_texture(c["tex"])
        normals = self.compute_norm(shape) @ rot  # normals of the unrotated shape, then rotated
        color = self.compute_color(texture, normals, c["gamma"])
        return vertex, texture, color, landmark

    def compute_for_render_wo_rotation(self, coeffs: torch.Tensor):
        """The official ``compute_for_render_woRotation``: no rotation or translation (angle and trans ignored).

        Quirk (WOROTATION_NORMALS_AFTER_TO_CAMERA): normals come from the z-flipped camera-space shape.
        """
        c = split_coeff(coeffs)
        shape = self.compute_shape(c["id"], c["exp"])
        vertex = self.to_camera(shape)
        landmark = self.get_landmarks(self.to_image(vertex))
        texture = self.compute_texture(c["tex"])
        normals = self.compute_norm(vertex if WOROTATION_NORMALS_AFTER_TO_CAMERA else shape)
        color = self.compute_color(texture, normals, c["gamma"])
        return vertex, texture, color, landmark

    def forward(self, coeffs: torch.Tensor):
        """Same as :meth:`compute_for_render`."""
        return self.compute_for_render(coeffs)
