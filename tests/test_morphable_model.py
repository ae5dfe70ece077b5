"""The offline stand-in face model, the landmark projection R_d, the eye aspect ratio and the rasteriser."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SHARED
from sadtalker_lib.coeffs import COEFF_257_SLICES
from sadtalker_lib.morphable.default import (
    EXPRESSION_NAMES,
    IDENTITY_NAMES,
    DefaultMorphableModel,
    build_default_arrays,
    landmark_template,
)
from sadtalker_lib.morphable.fit import default_model
from sadtalker_lib.morphable.model import coeffs_70, coeffs_73, coeffs_257, split_coeff
from sadtalker_lib.morphable.render import (
    draw_landmarks,
    draw_wireframe,
    eye_aspect_ratio,
    mouth_opening,
    project_landmarks,
    rasterize,
    render_mesh,
    vertex_pixels,
)

LM3D = SHARED / "data" / "bfm" / "similarity_Lm3D_all.mat"


@pytest.fixture(scope="module")
def model() -> DefaultMorphableModel:
    return default_model()


def _exp(model, **named) -> torch.Tensor:
    e = torch.zeros(1, 64)
    for k, v in named.items():
        e[0, model.expression_index(k)] = v
    return e


def _lm(model, exp=None, angle=(0.0, 0.0, 0.0)) -> np.ndarray:
    c = coeffs_257(exp=torch.zeros(1, 64) if exp is None else exp, angle=torch.tensor([angle]), trans=torch.zeros(1, 3))
    return project_landmarks(model, c, image_rows=True)[0].numpy()


# ---------------------------------------------------------------------------------------------
# The stand-in model
# ---------------------------------------------------------------------------------------------
def test_default_model_interface_and_determinism(model):
    n = model.num_vertices
    assert model.id_base.shape == (3 * n, 80) and model.exp_base.shape == (3 * n, 64)
    assert model.tex_base.shape == (3 * n, 80) and model.keypoints.shape == (68,)
    assert 500 < n < 3000 and model.num_faces > n
    assert model.camera.focal == 1015.0 and model.camera.image_size == 224
    assert "stand-in" in model.name and "stand-in" in DefaultMorphableModel.__doc__.lower()
    assert len(EXPRESSION_NAMES) >= 12 and len(IDENTITY_NAMES) >= 12
    again = build_default_arrays.__wrapped__()  # a fresh build gives the same numbers
    for k, v in build_default_arrays().items():
        assert np.array_equal(v, again[k]), k
    for t in model.buffers():
        assert torch.isfinite(t.float()).all()
    with pytest.raises(KeyError, match="jaw_open"):
        model.expression_index("smirk")


def test_mesh_faces_the_camera_and_has_an_open_mouth(model):
    with torch.no_grad():
        normals = model.compute_norm(model.mean_shape[None])[0].numpy()
    front = model.mean_shape[:, 2].numpy() > 0.0
    assert (normals[front, 2] > 0).mean() > 0.95  # outward normals toward the camera (+z)
    c = coeffs_257(exp=_exp(model, jaw_open=2.0), angle=torch.zeros(1, 3), trans=torch.zeros(1, 3))
    pts, depth, _, _ = vertex_pixels(model, c[0])
    r = rasterize(pts, depth, model.faces.numpy(), 224, 224)
    mouth = np.rint(pts[[62, 66]].mean(0)).astype(int)  # between the inner lips
    assert not r.mask[mouth[1], mouth[0]], "the mouth should be a hole when the jaw is open"
    nose = np.rint(pts[30]).astype(int)
    assert r.mask[nose[1], nose[0]]


def test_landmark_template_is_a_face():
    lm = landmark_template()
    assert lm.shape == (68, 3)
    # symmetric: mirror pairs (jaw, eyes' outer corners, mouth corners)
    for a, b in ((0, 16), (36, 45), (48, 54), (19, 24)):
        assert lm[a, 0] == pytest.approx(-lm[b, 0], abs=1e-6) and lm[a, 1] == pytest.approx(lm[b, 1], abs=1e-6)
    assert lm[30, 2] == lm[:, 2].max()  # the nose tip is the closest point
    assert lm[8, 1] == lm[:, 1].min()  # the chin is the lowest


@pytest.mark.skipif(not LM3D.is_file(), reason="similarity_Lm3D_all.mat not available")
def test_landmark_template_close_to_the_official_mean_landmarks():
    """Checked, never copied: after a similarity fit the template is within ~1 cm of Deep3DFaceRecon's mean 68."""
    from scipy.io import loadmat

    ref = loadmat(LM3D)["lm"].astype(np.float64)
    lm = landmark_template()
    a0, b0 = lm - lm.mean(0), ref - ref.mean(0)
    u, s, vt = np.linalg.svd(a0.T @ b0)
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = (s * np.diag(d)).sum() / (a0**2).sum()
    err = np.linalg.norm(scale * a0 @ rot - b0, axis=1)
    print(f"template vs similarity_Lm3D_all: rms {np.sqrt((err**2).mean()):.4f} units, max {err.max():.4f}")
    assert np.sqrt((err**2).mean()) < 0.08 and abs(scale - 1) < 0.1


def test_designed_expressions_do_what_their_names_say(model):
    base = _lm(model)
    jaw = _lm(model, _exp(model, jaw_open=1.0))
    gap = lambda p: p[66, 1] - p[62, 1]  # noqa: E731  inner lip gap in rows (down = +)
    assert gap(jaw) - gap(base) > 5.0  # ~1 cm at 224 px is ~10 px
    assert jaw[8, 1] > base[8, 1] + 5.0  # the chin goes down
    assert np.abs(jaw[:27] - base[:27])[[17, 19, 24, 26]].max() < 1e-3  # brows stay
    smile = _lm(model, _exp(model, lip_corners_up=1.0))
    assert smile[48, 1] < base[48, 1] - 2 and smile[54, 1] < base[54, 1] - 2 and smile[54, 0] > base[54, 0]
    frown = _lm(model, _exp(model, lip_corners_down=1.0))
    assert frown[48, 1] > base[48, 1] + 2
    pucker = _lm(model, _exp(model, pucker=1.0))
    assert np.linalg.norm(pucker[54] - pucker[48]) < np.linalg.norm(base[54] - base[48]) - 2
    brows = _lm(model, _exp(model, brows_raise=1.0))
    assert (brows[17:27, 1] < base[17:27, 1] - 2).all()
    upper = _lm(model, _exp(model, upper_lip_raise=1.0))
    assert upper[51, 1] < base[51, 1] - 2 and abs(upper[57, 1] - base[57, 1]) < 0.5
    lower = _lm(model, _exp(model, lower_lip_depress=1.0))
    assert lower[57, 1] > base[57, 1] + 2 and abs(lower[51, 1] - base[51, 1]) < 0.5


def test_each_eye_blinks_on_its_own(model):
    base = _lm(model)
    r_closed = _lm(model, _exp(model, blink_right=1.0))
    both = _lm(model, _exp(model, blink_right=1.0, blink_left=1.0))
    assert np.abs(r_closed[42:48] - base[42:48]).max() < 1e-3  # the left eye does not move
    ear = [float(eye_aspect_ratio(p)) for p in (base, r_closed, both)]
    # closed lids meet in the model; their slightly different depths leave a hair's breadth after projection
    assert ear[0] > 0.4 and ear[1] == pytest.approx(ear[0] / 2, rel=0.05) and ear[2] < 0.01
    half = float(eye_aspect_ratio(_lm(model, _exp(model, blink_right=0.5, blink_left=0.5))))
    assert ear[2] < half < ear[0]


# ---------------------------------------------------------------------------------------------
# R_d and the eye aspect ratio
# ---------------------------------------------------------------------------------------------
def test_project_landmarks_layouts_and_gradient(model):
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 257, generator=g) * 0.3
    c[:, COEFF_257_SLICES["angle"]] *= 0.3
    with torch.no_grad():
        full = model.compute_for_render(c)[3]
    assert torch.allclose(project_landmarks(model, c), full, atol=1e-3)
    ident = split_coeff(c)["id"]
    assert torch.allclose(project_landmarks(model, coeffs_70(c), ident), full, atol=1e-3)
    assert torch.allclose(project_landmarks(model, coeffs_73(c, torch.ones(3, 3)), ident), full, atol=1e-3)
    # [B, T, 70] with an identity per clip
    seq = coeffs_70(c)[None].repeat(2, 1, 1).requires_grad_(True)
    out = project_landmarks(model, seq, ident[None].expand(2, 3, 80), image_rows=True)
    assert out.shape == (2, 3, 68, 2)
    assert torch.allclose(out[0, :, :, 1], 223 - full[..., 1], atol=1e-3)
    eye_loss = (eye_aspect_ratio(out) - 0.0).abs().sum()  # supp. Eq. 7 against "closed"
    eye_loss.backward()
    blink_cols = [model.expression_index("blink_right"), model.expression_index("blink_left")]
    assert seq.grad[..., blink_cols].abs().min() > 0
    with pytest.raises(ValueError, match="70, 73 or 257"):
        project_landmarks(model, torch.zeros(1, 71))


def test_mouth_opening_grows_with_jaw_and_ignores_scale(model):
    base, jaw = _lm(model), _lm(model, _exp(model, jaw_open=1.0))
    closed, opened = float(mouth_opening(base)), float(mouth_opening(jaw))
    assert opened > closed + 0.05  # ~1 cm of gap over ~9 cm between the outer eye corners
    assert mouth_opening(3.0 * jaw + 7.0) == pytest.approx(opened, rel=1e-6)  # scale- and shift-free
    both = torch.tensor(np.stack([base, jaw]))  # torch and numpy agree, batched
    assert torch.allclose(mouth_opening(both), torch.tensor([closed, opened], dtype=both.dtype))


def test_eye_aspect_ratio_by_hand():
    p = np.zeros((68, 2))
    p[36], p[39], p[42], p[45] = (0, 0), (4, 0), (10, 0), (14, 0)  # both eyes 4 wide
    p[[37, 38]], p[[40, 41]] = (1, 1), (1, -1)  # right eye 2 high
    p[[43, 44]], p[[46, 47]] = (11, 0.5), (11, -0.5)  # left eye 1 high
    # E^w = 4, E^h = |2 + 2| / 2 + |1 + 1| / 2 = 3
    assert eye_aspect_ratio(p) == pytest.approx(0.75)
    assert float(eye_aspect_ratio(torch.tensor(p)[None])[0]) == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------
# Rasteriser and pictures
# ---------------------------------------------------------------------------------------------
def test_rasterize_area_and_depth_order():
    pts = np.array([[10.0, 10.0], [50.0, 10.0], [10.0, 50.0], [0.0, 0.0], [63.0, 0.0], [0.0, 63.0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    near = rasterize(pts, np.array([1.0, 1, 1, 2, 2, 2]), faces, 64, 64)
    far = rasterize(pts, np.array([3.0, 3, 3, 2, 2, 2]), faces, 64, 64)
    area = (near.face == 0).sum()
    assert area == 861  # pixel centres inside or on the edges: Pick, 800 + 120 / 2 + 1
    assert (far.face == 0).sum() == 0  # hidden behind the big triangle
    assert ((near.face >= 0) == (far.face >= 0)).all()
    assert np.allclose(near.bary[near.mask].sum(1), 1.0)
    vals = near.interpolate(np.array([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]]), faces)
    assert vals[20, 20, 0] == pytest.approx(1.0) and vals[5, 55, 0] == pytest.approx(0.0)


def test_pictures(model):
    c = coeffs_257(exp=_exp(model, jaw_open=1.0), angle=torch.tensor([[0.0, 0.3, 0.0]]), trans=torch.zeros(1, 3))[0]
    photo = np.full((224, 224, 3), 200, np.uint8)
    for mode in ("shaded", "color", "normals"):
        img = render_mesh(model, c, mode=mode)
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8 and img.max() > 0
    over = render_mesh(model, c, photo, alpha=0.5)
    changed = (over != photo).any(-1)
    assert 0.2 < changed.mean() < 0.8 and (over[0, 0] == photo[0, 0]).all()
    pts, depth, _, _ = vertex_pixels(model, c)
    wire = draw_wireframe(photo, pts, model.faces.numpy(), depth=depth)
    assert (wire != photo).any() and (photo == 200).all()  # drawn on a copy
    lms = draw_landmarks(photo, pts[:68])
    assert (lms != photo).any()
    with pytest.raises(ValueError, match="257"):
        render_mesh(model, np.zeros(70))
    with pytest.raises(ValueError, match="mode"):
        render_mesh(model, c, mode="xray")


def test_fit_figure(model):
    import matplotlib

    matplotlib.use("Agg")
    from sadtalker_lib.morphable.fit import fit_landmarks
    from sadtalker_lib.morphable.render import fit_figure

    target = _lm(model, _exp(model, jaw_open=0.5))
    r = fit_landmarks(target, model)
    fig = fit_figure(r, model=model)
    assert len(fig.axes) == 4
    import matplotlib.pyplot as plt

    plt.close(fig)
