"""face-vid2vid renderer (KPDetector, OcclusionAwareSPADEGenerator), keypoint motion and the render loop.

Parity against the official run (fixtures facerender.npz, facerender_512.npz, animation_steps.npz) on the
seeded official-format checkpoints. The render loop is checked as users run it: TalkingHeadPipeline.render_batches
(the one streaming loop, batch_size 2 consecutive frames) on the mapping.npz clip, against the official
make_animation frames 0..3 (animation_steps.npz) and frames 0, 38 (facerender.npz). Each heavy forward runs
once per session (module-scoped fixtures): generator at 256 on 2 frames, at 512 on 1 frame, and 5 streamed
frames.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from _official_batch import make_animation

from sadtalker_lib.official.io import CheckpointError, load_official
from sadtalker_lib.models.facevid2vid import (
    FaceVid2VidConfig,
    GeneratorConfig,
    KPDetector,
    OcclusionAwareSPADEGenerator,
    make_coordinate_grid,
)
from sadtalker_lib.models.facevid2vid.blocks import AntiAliasDownsample2d, shallow_conv3d
from sadtalker_lib.models.mapping import MappingNet, MappingNetConfig
from sadtalker_lib.pipeline import GenerationOptions, Models, TalkingHeadPipeline
from sadtalker_lib.steps.keypoints import (
    OFFICIAL_PI,
    facevid2vid_keypoints,
    get_rotation_matrix,
    headpose_pred_to_degree,
    keypoint_transformation,
)
from sadtalker_lib.steps.render import render_stream
from sadtalker_lib.steps.windows import driving_windows

KP_ATOL = 1e-5  # keypoints (official rerun noise ~1e-6)
PIXEL_ATOL = 5e-4  # rendered frames in [0, 1] (official 1- vs 2-thread noise up to 1.4e-4)
HE_KEYS = ("yaw", "pitch", "roll", "t", "exp")


def _maxdiff(ours, ref) -> float:
    ours = ours.detach().numpy() if torch.is_tensor(ours) else ours
    return float(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64)).max())


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _load(module, network, source, size=256):
    return load_official(module, network, source, size=size).eval()


def spectral_norm_eval_weight(weight_orig, weight_u, weight_v):
    """The conv weight that ``torch.nn.utils.spectral_norm`` uses in EVAL mode: W / (u . (W_mat v)).

    Official quirk (src/facerender/modules/util.py SPADEResnetBlock, norm_G 'spadespectralinstance'): the SPADE
    decoder's convs are spectral-normed, so the checkpoints hold ``weight_orig``, ``weight_u``, ``weight_v``. In
    eval mode torch runs NO power iteration: sigma = u . (W_mat v) from the STORED u, v. A module left in train
    mode would update u, v on every forward and drift from the official output.
    """
    w_mat = weight_orig.reshape(weight_orig.shape[0], -1)
    return weight_orig / torch.dot(weight_u, torch.mv(w_mat, weight_v))


def _he(f, prefix, step=None):
    return {k: _t(f[f"{prefix}_{k}"] if step is None else f[f"{prefix}_{k}"][:, step]) for k in HE_KEYS}


# ---------------------------------------------------------------------------------------------
# Keypoint motion (no networks): exact against the official mapping outputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parity
def test_keypoint_transformation_matches_official(fixture):
    f = fixture("facerender")
    kp_c = _t(f["kp_canonical"])
    he = _he(f, "he_source")
    t_before = he["t"].clone()
    assert _maxdiff(keypoint_transformation(kp_c, he), f["kp_source"]) <= 1e-6
    assert torch.equal(he["t"], t_before)  # the official code zeroes t[:, 0], t[:, 2] in place; we do not
    assert _maxdiff(keypoint_transformation({"value": kp_c}, _he(f, "he_driving", 0)), f["kp_driving"][:, 0]) <= 1e-6


@pytest.mark.parity
def test_headpose_degrees_match_official(fixture):
    m = fixture("mapping")
    for name in ("yaw", "pitch", "roll"):
        assert _maxdiff(headpose_pred_to_degree(_t(m[f"tgt_{name}"])), m[f"tgt_{name}_deg"]) <= 1e-4


def test_rotation_matrix_conventions():
    z = torch.zeros(1)
    assert torch.allclose(get_rotation_matrix(z, z, z), torch.eye(3).expand(1, 3, 3))
    c, s = np.cos(OFFICIAL_PI / 2), np.sin(OFFICIAL_PI / 2)  # 90 degrees is 3.14 / 2 rad (official pi quirk)
    ninety = torch.tensor([90.0])
    yaw_90 = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)  # yaw: about y
    pitch_90 = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float32)  # pitch: about x
    roll_90 = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float32)  # roll: about z
    assert torch.allclose(get_rotation_matrix(ninety, z, z)[0], yaw_90, atol=1e-6)
    assert torch.allclose(get_rotation_matrix(z, ninety, z)[0], pitch_90, atol=1e-6)
    assert torch.allclose(get_rotation_matrix(z, z, ninety)[0], roll_90, atol=1e-6)
    assert abs(get_rotation_matrix(z, z, ninety)[0, 0, 0].item() - 7.963e-4) < 1e-6  # cos(1.57), not 0
    g = torch.Generator().manual_seed(0)
    y, p, r = (torch.rand(4, generator=g) * 120 - 60 for _ in range(3))
    rot = get_rotation_matrix(y, p, r)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-6)
    order = get_rotation_matrix(z, p[:1], z) @ get_rotation_matrix(y[:1], z, z) @ get_rotation_matrix(z, z, r[:1])
    assert torch.allclose(rot[:1], order, atol=1e-6)  # R = pitch @ yaw @ roll


def test_keypoint_transformation_overrides_and_bad_input():
    g = torch.Generator().manual_seed(1)
    kp = torch.randn(2, 15, 3, generator=g)
    he = {"yaw": torch.randn(2, 66, generator=g), "pitch": torch.randn(2, 66, generator=g),
          "roll": torch.randn(2, 66, generator=g), "t": torch.randn(2, 3, generator=g),
          "exp": torch.randn(2, 45, generator=g)}
    yaw = torch.tensor([10.0, -20.0])
    a = keypoint_transformation(kp, he, yaw=yaw)
    b = keypoint_transformation(kp, {**he, "yaw_in": yaw})  # the official dict key does the same
    assert torch.equal(a, b) and not torch.allclose(a, keypoint_transformation(kp, he))
    no_exp = keypoint_transformation(kp, he, wo_exp=True)
    assert torch.allclose(keypoint_transformation(kp, he) - no_exp, he["exp"].view(2, 15, 3), atol=1e-6)
    with pytest.raises(ValueError, match="exp"):
        keypoint_transformation(kp, {**he, "exp": torch.zeros(2, 44)})
    with pytest.raises(ValueError, match="66"):
        headpose_pred_to_degree(torch.zeros(2, 65))


def test_facevid2vid_keypoints_keep_all_of_the_translation():
    """SadTalker's inference drops t_x and t_z (official quirk); face-vid2vid, which trains the HEEstimator, adds
    them."""
    g = torch.Generator().manual_seed(2)
    kp = torch.randn(2, 15, 3, generator=g)
    he = {"yaw": torch.randn(2, 66, generator=g), "pitch": torch.randn(2, 66, generator=g),
          "roll": torch.randn(2, 66, generator=g), "t": torch.randn(2, 3, generator=g),
          "exp": torch.randn(2, 45, generator=g)}
    t = he["t"].clone()
    full, inference = facevid2vid_keypoints(kp, he), keypoint_transformation(kp, he)
    expected = t.clone()
    expected[:, 1] = 0
    assert torch.allclose(full - inference, expected[:, None].expand(2, 15, 3), atol=1e-6)
    assert torch.equal(he["t"], t)  # the caller's tensor is left as it was


# ---------------------------------------------------------------------------------------------
# Tiny networks: shapes, value range, bad input, spectral norm in eval mode (fast)
# ---------------------------------------------------------------------------------------------
def _tiny(seed=0):
    torch.manual_seed(seed)
    kp, gen = FaceVid2VidConfig.tiny().build()
    return kp.eval(), gen.eval()


def test_tiny_renderer_shapes_and_range():
    kp_det, gen = _tiny()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp = kp_det(x)
        out = gen(x, kp_source=kp, kp_driving=kp + 0.05)
    assert kp.shape == (2, 15, 3) and kp.abs().max() <= 1
    d, h = gen.config.reshape_depth, 16
    assert out["prediction"].shape == (2, 3, 64, 64)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
    assert out["mask"].shape == (2, 16, d, h, h)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, d, h, h), atol=1e-5)
    assert out["deformation"].shape == (2, d, h, h, 3)
    assert out["occlusion_map"].shape == (2, 1, h, h)


def test_identity_motion_is_identity_warp():
    """With kp_driving == kp_source every sparse motion is the identity, so the blended warp is too."""
    _, gen = _tiny()
    kp = torch.rand(1, 15, 3) - 0.5
    with torch.no_grad():
        out = gen(torch.rand(1, 3, 64, 64), kp_source=kp, kp_driving=kp)
    grid = make_coordinate_grid(out["deformation"].shape[1:4])
    kept = (out["mask"] * (out["mask"] >= 1e-3)).sum(1)[..., None]  # weights left after the official 1e-3 floor
    assert torch.allclose(out["deformation"][0], grid * kept[0], atol=1e-5)


def _conv3d_refused(self, x):
    raise AssertionError("Conv3d.forward called")


def test_shallow_conv3d_folds_depth_only_under_autograd(monkeypatch):
    """The dense-motion mask conv (7x7x7) over a 4-deep volume runs as a Conv2d of stacked depths while autograd
    records it (training speed), with the Conv3d's values and gradients; otherwise it is the Conv3d itself."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(6, 5, 7, padding=3)
    x = torch.randn(2, 6, 4, 9, 9, requires_grad=True)
    with torch.no_grad():
        ref = conv(x)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(conv(x), (x, conv.weight, conv.bias), g)
    monkeypatch.setattr(torch.nn.Conv3d, "forward", _conv3d_refused)  # the folded path must not call it
    out = shallow_conv3d(conv, x)
    grads = torch.autograd.grad(out, (x, conv.weight, conv.bias), g)
    with pytest.raises(AssertionError, match="Conv3d.forward"):  # deeper than the kernel reaches: the Conv3d
        shallow_conv3d(conv, torch.randn(1, 6, 5, 9, 9, requires_grad=True))
    with torch.no_grad(), pytest.raises(AssertionError, match="Conv3d.forward"):  # inference: the Conv3d
        shallow_conv3d(conv, x)
    with pytest.raises(AssertionError, match="Conv3d.forward"):  # 3x3x3: measured slower folded
        shallow_conv3d(torch.nn.Conv3d(6, 5, 3, padding=1), torch.randn(1, 6, 2, 9, 9, requires_grad=True))
    monkeypatch.undo()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    # the tiny renderer's dense motion gives the same masks with and without autograd
    _, gen = _tiny()
    src, kp = torch.rand(2, 3, 64, 64), torch.rand(2, 15, 3) - 0.5
    with torch.no_grad():
        plain = gen(src, kp_source=kp, kp_driving=kp + 0.05)["mask"]
    folded = gen(src.requires_grad_(), kp_source=kp, kp_driving=kp + 0.05)["mask"]
    torch.testing.assert_close(folded.detach(), plain, rtol=1e-4, atol=1e-6)


def test_anti_alias_downsample_is_blur_then_subsample():
    """The strided blur keeps exactly the pixels of the official blur-everything-then-subsample."""
    torch.manual_seed(0)
    for scale in (0.5, 0.25, 0.125):
        down = AntiAliasDownsample2d(3, scale)
        for size in (64, 61):
            x = torch.rand(2, 3, size, size)
            a, b = down.pad_before, down.pad_after
            full = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (a, b, a, b)), down.weight, groups=3)
            torch.testing.assert_close(down(x), full[:, :, ::down.step, ::down.step], rtol=0, atol=1e-6)


def test_renderer_rejects_bad_input():
    kp_det, gen = _tiny()
    with pytest.raises(ValueError, match="divisible"):
        kp_det(torch.rand(1, 3, 60, 60))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        gen.encode_source(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="kp_driving"):
        gen(torch.rand(1, 3, 64, 64), kp_source=torch.zeros(1, 15, 3), kp_driving=torch.zeros(1, 10, 3))
    with pytest.raises(ValueError, match="max_features"):
        GeneratorConfig(reshape_channel=16)
    with pytest.raises(CheckpointError):  # a tiny model does not take the official (full-size) weights
        load_official(KPDetector(FaceVid2VidConfig.tiny().kp_detector), "kp_extractor",
                      {"kp_detector": KPDetector().state_dict()})


def test_spectral_norm_uses_stored_vectors_in_eval():
    _, gen = _tiny()
    conv = gen.decoder.G_middle_0.conv_0
    torch.manual_seed(3)
    conv.weight_u.copy_(torch.randn_like(conv.weight_u))  # not the converged singular vector
    u, v = conv.weight_u.clone(), conv.weight_v.clone()
    with torch.no_grad():
        gen(torch.rand(1, 3, 64, 64), kp_source=torch.zeros(1, 15, 3), kp_driving=torch.zeros(1, 15, 3))
    assert torch.equal(conv.weight_u, u) and torch.equal(conv.weight_v, v)  # no power iteration in eval
    assert torch.allclose(conv.weight, spectral_norm_eval_weight(conv.weight_orig, u, v))


def _tiny_mapping(calls):
    g = torch.Generator().manual_seed(2)
    head = {k: torch.randn(1, n, generator=g) * 0.3 for k, n in (("yaw", 66), ("pitch", 66), ("roll", 66),
                                                                  ("t", 3), ("exp", 45))}

    def mapping(sem):  # a stand-in mapping net: depends on the window mean so frames differ
        calls["mapping"] += 1
        s = sem.mean(dim=(1, 2))[:, None]
        return {k: v.expand(sem.shape[0], -1) * (1 + s) for k, v in head.items()}

    return mapping


def test_render_stream_tiny_encodes_source_once_and_applies_overrides():
    kp_det, gen = _tiny()
    calls = {"encode": 0, "mapping": 0}
    encode = gen.encode_source

    def counting_encode(x):
        calls["encode"] += 1
        return encode(x)

    gen.encode_source = counting_encode
    models = Models(kp_detector=kp_det, generator=gen, mapping_crop=_tiny_mapping(calls))
    g = torch.Generator().manual_seed(4)
    coeffs, src_coeffs, src = torch.randn(5, 70, generator=g), torch.randn(73, generator=g), torch.rand(1, 3, 64, 64)
    windows = driving_windows(coeffs, src_coeffs)
    out = list(render_stream(models, src, windows, batch_size=2, progress=False))
    assert calls == {"encode": 1, "mapping": 1 + 3}  # the source once, then 3 batches (2, 2, 1 frames)
    assert [b.start for b in out] == [0, 2, 4] and [b.frames.shape[0] for b in out] == [2, 2, 1]
    assert out[0].frames.shape == (2, 3, 64, 64) and out[0].kp_driving.shape == (2, 15, 3)
    enc = models.encode_source(src, windows.source)
    with torch.no_grad():  # frames 2, 3 equal a direct generator call (source encoded again, with B = 2)
        direct = gen(src.expand(2, -1, -1, -1), kp_source=enc.kp_source.expand(2, -1, -1),
                     kp_driving=out[1].kp_driving)["prediction"]
        cached = gen.render(enc.feature_3d.expand(2, -1, -1, -1, -1), kp_source=enc.kp_source.expand(2, -1, -1),
                            kp_driving=out[1].kp_driving)["prediction"]
    assert _maxdiff(out[1].frames, cached.numpy()) == 0
    assert _maxdiff(out[1].frames, direct.numpy()) <= PIXEL_ATOL  # encoder batch size: float order (1.6e-4)
    yaw = [0.0, 20.0]
    turned = list(render_stream(models, src, driving_windows(coeffs, src_coeffs, input_yaw=yaw), batch_size=2,
                                progress=False))
    he = models.map_motion(next(windows.batches(2)).windows)
    expected = keypoint_transformation(enc.kp_canonical.expand(2, -1, -1), he, yaw=torch.tensor([0.0, 5.0]))
    assert _maxdiff(turned[0].kp_driving, expected.numpy()) <= 1e-6
    assert _maxdiff(turned[2].kp_driving, out[2].kp_driving.numpy()) > 1e-3  # the head turned by frame 4
    assert not Models(kp_detector=kp_det.train(), generator=gen).kp_detector.training  # the wrapper sets eval
    kp_det.train()  # switched back behind the wrapper's back: refused, batch norm would use batch statistics
    with pytest.raises(ValueError, match="eval"):
        next(render_stream(models, src, windows, progress=False))


def test_streamed_frames_equal_the_official_batch_layout():
    """The one render loop (B consecutive frames per call, source encoded once) gives the official
    make_animation's frames (time split across the B rows, source re-encoded per call; tests/_official_batch.py)."""
    kp_det, gen = _tiny()
    models = Models(kp_detector=kp_det, generator=gen, mapping_crop=_tiny_mapping({"mapping": 0}))
    g = torch.Generator().manual_seed(5)
    coeffs, src_coeffs, src = torch.randn(6, 70, generator=g), torch.randn(73, generator=g), torch.rand(1, 3, 64, 64)
    windows = driving_windows(coeffs, src_coeffs)
    streamed = torch.cat([b.frames for b in render_stream(models, src, windows, batch_size=2, progress=False)])
    from _official_batch import get_facerender_semantics

    sem = get_facerender_semantics(coeffs, src_coeffs, batch_size=2)
    anim = make_animation(src.expand(2, -1, -1, -1), sem.source_semantics, sem.target_semantics,
                          kp_detector=kp_det, generator=gen, mapping=models.mapping_crop)
    streamed_kp = torch.cat([b.kp_driving for b in render_stream(models, src, windows, batch_size=2, progress=False)])
    assert _maxdiff(streamed_kp, sem.frames(anim.kp_driving).numpy()) <= 1e-6
    # other batch partners change the generator's float summation order only (measured 2.0e-4 on these random
    # tiny networks); the official-size comparison is test_animation_frames
    assert _maxdiff(streamed, sem.frames(anim.frames).numpy()) <= PIXEL_ATOL


# ---------------------------------------------------------------------------------------------
# Official weights at 256: one KPDetector pass and one generator pass (2 frames)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def renderer_256(reference_checkpoints):
    kp = _load(KPDetector(), "kp_extractor", reference_checkpoints, 256)
    gen = _load(OcclusionAwareSPADEGenerator(), "generator", reference_checkpoints, 256)
    yield kp, gen
    del kp, gen
    gc.collect()


@pytest.fixture(scope="module")
def facerender_256(renderer_256, fixture):
    kp_det, gen = renderer_256
    f = fixture("facerender")
    with torch.no_grad():
        kp_c = kp_det(_t(f["source_image"]))
        out = gen(_t(f["source_image"]), kp_source=_t(f["kp_source"]), kp_driving=_t(f["kp_driving"][:, 0]))
    return f, kp_c, out


@pytest.mark.parity
def test_kp_canonical_256(facerender_256):
    f, kp_c, _ = facerender_256
    assert _maxdiff(kp_c, f["kp_canonical"]) <= KP_ATOL  # measured 1.4e-6


@pytest.mark.parity
@pytest.mark.parametrize("ours, ref, atol", [
    ("mask", "gen_mask", 1e-5),  # measured 9.0e-7
    ("occlusion_map", "gen_occlusion_map", 1e-5),  # measured 2.7e-6
    ("deformation", "dense_motion_deformation", 1e-5),  # measured 6.0e-7
    ("prediction", "prediction", PIXEL_ATOL),  # measured 1.05e-4
])
def test_generator_256(facerender_256, ours, ref, atol):
    f, _, out = facerender_256
    assert out[ours].shape == f[ref][:, 0].shape
    assert _maxdiff(out[ours], f[ref][:, 0]) <= atol


@pytest.mark.parity
def test_pth_tar_holds_the_same_renderer(renderer_256, reference_checkpoints, facerender_256):
    """The old-version facevid2vid_00189-model.pth.tar route: keys 'kp_detector' / 'generator'."""
    kp_det, gen = renderer_256
    path = reference_checkpoints / "facevid2vid_00189-model.pth.tar"
    kp_old = _load(KPDetector(), "kp_extractor", path)
    gen_old = _load(OcclusionAwareSPADEGenerator(), "generator", path)
    for new, old in ((kp_det, kp_old), (gen, gen_old)):
        a, b = new.state_dict(), old.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k].float(), b[k].float()) for k in a)
    f, kp_c, _ = facerender_256
    with torch.no_grad():
        assert _maxdiff(kp_old(_t(f["source_image"])), f["kp_canonical"]) <= KP_ATOL


# ---------------------------------------------------------------------------------------------
# Official weights at 512: one frame (~50 s on 2 cores)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def facerender_512(reference_checkpoints, fixture):
    f = fixture("facerender_512")
    kp_det = _load(KPDetector(), "kp_extractor", reference_checkpoints, 512)
    gen = _load(OcclusionAwareSPADEGenerator(), "generator", reference_checkpoints, 512)
    with torch.no_grad():
        kp_c = kp_det(_t(f["source_image"]))
        pred = gen(_t(f["source_image"]), kp_source=_t(f["kp_source"]),
                   kp_driving=_t(f["kp_driving"][:, 0]))["prediction"]
    del kp_det, gen
    gc.collect()
    return f, kp_c, pred


@pytest.mark.parity
@pytest.mark.slow
def test_kp_canonical_512(facerender_512):
    f, kp_c, _ = facerender_512
    # measured 1.05e-5: float32 noise of the 128x128x16 heatmaps, not a model difference. In float64 our
    # detector is 6.5e-6 from the float32 one and the official float32 output is 1.7e-5 from it.
    assert _maxdiff(kp_c, f["kp_canonical"]) <= 3e-5


@pytest.mark.parity
@pytest.mark.slow
def test_prediction_512(facerender_512):
    f, _, pred = facerender_512
    assert pred.shape == (1, 3, 512, 512)
    assert _maxdiff(pred, f["prediction"][:, 0]) <= PIXEL_ATOL  # measured 1.4e-4


# ---------------------------------------------------------------------------------------------
# The users' render path: TalkingHeadPipeline.render_batches, batch_size 2, mapping_00229
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_256(renderer_256, reference_checkpoints):
    kp_det, gen = renderer_256
    mapping = _load(MappingNet(MappingNetConfig.crop()), "mapping_crop", reference_checkpoints)
    return TalkingHeadPipeline(models=Models(kp_detector=kp_det, generator=gen, mapping_crop=mapping))


def _stream(pipe, fixture, start, stop):
    """Frames start .. stop-1 of the mapping.npz clip through the users' render loop: frames [N, 3, 256, 256],
    driven kp [N, 15, 3], and the source encoding (the same call the loop makes once)."""
    m = fixture("mapping")
    source = _t(fixture("facerender")["source_image"][:1])  # [1, 3, 256, 256], get_facerender_data's image
    opts = GenerationOptions(batch_size=2)
    batches = list(pipe.render_batches(source, m["coeff_70"], opts, source_coeffs=m["first_coeff_73"][0],
                                       start=start, stop=stop, progress=False))
    assert [b.start for b in batches] == list(range(start, stop, 2))
    enc = pipe.models.encode_source(source, pipe.driving_windows(m["first_coeff_73"][0], m["coeff_70"], opts).source)
    return torch.cat([b.frames for b in batches]), torch.cat([b.kp_driving for b in batches]), enc


# frames 0..3 of the 6 in animation_steps.npz: both of its batch rows (row b = frames 3b..3b+2) and two of our
# 2-frame batches; at ~20 s per 256 px frame on one CPU thread, frames 4 and 5 would add no other code path
STREAMED = 4


@pytest.fixture(scope="module")
def animation_steps(pipeline_256, fixture):
    return fixture("animation_steps"), *_stream(pipeline_256, fixture, 0, STREAMED)


@pytest.mark.parity
@pytest.mark.slow
def test_animation_keypoints(animation_steps):
    f, _, kp_driving, enc = animation_steps
    assert np.array_equal(f["target_semantics"].reshape(6, 70, 27),
                          f["target_semantics"][[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]])  # row b = frames 3b..
    assert _maxdiff(enc.kp_source[0], f["kp_source"][0]) <= KP_ATOL  # measured 1.4e-6
    assert _maxdiff(kp_driving, f["kp_driving"].reshape(6, 15, 3)[:STREAMED]) <= KP_ATOL  # measured 1.5e-6


@pytest.mark.parity
@pytest.mark.slow
def test_animation_frames(animation_steps):
    f, frames, _, _ = animation_steps
    ref = f["prediction_float16"].reshape(6, 3, 256, 256)[:STREAMED].astype(np.float32)  # time order 0..STREAMED-1
    assert frames.shape == ref.shape
    # the reference frames are float16 (quantisation <= 2.4e-4); measured 3.7e-4 = that + our 1e-4
    assert _maxdiff(frames, ref) <= PIXEL_ATOL


@pytest.mark.parity
@pytest.mark.slow
def test_streamed_frames_0_and_38_match_facerender(pipeline_256, animation_steps, fixture):
    """facerender.npz: the official first batch step drove frames 0 and 38 (rows 0 and 1), in float32."""
    f = fixture("facerender")
    assert f["driving_frame_indices"].ravel().tolist() == [0, 38]
    frames_38, kp_38, enc = _stream(pipeline_256, fixture, 38, 39)  # frame 38 alone (a batch of one)
    _, frames_0, kp_0, _ = animation_steps
    assert _maxdiff(enc.kp_canonical[0], f["kp_canonical"][0]) <= KP_ATOL  # measured 1.5e-6
    assert _maxdiff(enc.kp_source[0], f["kp_source"][0]) <= KP_ATOL  # measured 1.4e-6
    for row, (frames, kp) in enumerate(((frames_0, kp_0), (frames_38, kp_38))):
        assert _maxdiff(kp[0], f["kp_driving"][row, 0]) <= KP_ATOL  # measured 1.5e-6 / 1.4e-6
        assert _maxdiff(frames[0], f["prediction"][row, 0]) <= PIXEL_ATOL  # measured 1.07e-4 / 9.2e-5
