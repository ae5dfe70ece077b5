"""TalkingHeadPipeline end to end with tiny seeded networks: every preprocess mode, still, reference videos,
camera overrides, streaming, and the bad inputs of the pipeline issue."""
from __future__ import annotations


import numpy as np
import pytest
import skimage.data
import soundfile as sf
import torch

from sadtalker_lib.audio import AudioError
from sadtalker_lib.coeffs import POSE
from sadtalker_lib.official.io import CheckpointError
from sadtalker_lib.face.detect import ImageLoadError, MultipleFacesWarning, NoFaceError
from sadtalker_lib.pipeline import GenerationOptions, TalkingHeadPipeline
from sadtalker_lib.video import VideoError, probe_video, write_video

SR = 16000


def _speech(seconds=0.4, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return np.stack([x] * channels, axis=1).astype(np.float32) if channels > 1 else x.astype(np.float32)


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return TalkingHeadPipeline.from_checkpoints(tiny_dir, progress=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    img = skimage.data.astronaut()
    import imageio.v3 as iio

    iio.imwrite(d / "portrait.png", img)
    sf.write(d / "speech.wav", _speech(0.4), SR)
    # a short reference video: the portrait slightly shifted frame to frame
    frames = [np.roll(img, s, axis=1) for s in (0, 2, 4, 6, 8)]
    write_video(d / "ref.mp4", frames, fps=25, audio=(_speech(0.2), SR))
    return d


@pytest.mark.parametrize("mode,still", [("crop", False), ("extcrop", True), ("resize", False), ("full", True),
                                        ("extfull", False)])
def test_every_preprocess_mode_writes_a_video_with_audio(pipe, files, tmp_path, mode, still):
    out = tmp_path / f"{mode}.mp4"
    r = pipe.generate(files / "portrait.png", files / "speech.wav", out=out, preprocess=mode, still=still, seed=0,
                      progress=False, keep_frames=True)
    info = probe_video(out)
    assert r.num_frames == 10 and info["has_audio"]
    assert abs(info["duration_s"] - 0.4) < 0.1
    assert r.coeffs.shape == (10, 70) and r.source.coeffs.shape == (73,)
    if mode.startswith("full") or mode == "extfull":
        assert r.frames.shape[1:3] == (512, 512)  # pasted back into the 512 x 512 original
    if still:  # the pose follows the source: every target frame's pose columns equal the source's
        from sadtalker_lib.steps.windows import target_coefficients

        tgt = target_coefficients(r.coeffs, r.source.coeffs, full=mode.endswith("full"), still=True)
        np.testing.assert_allclose(tgt[:, POSE].numpy(), np.repeat(r.source.coeffs[None, POSE], 10, 0), atol=1e-6)


def test_seed_makes_generation_reproducible_and_style_matters(pipe, files):
    a = pipe.generate(files / "portrait.png", files / "speech.wav", seed=3, progress=False)
    b = pipe.generate(files / "portrait.png", files / "speech.wav", seed=3, progress=False)
    c = pipe.generate(files / "portrait.png", files / "speech.wav", seed=3, pose_style=45, progress=False)
    np.testing.assert_array_equal(a.coeffs, b.coeffs)
    assert np.abs(a.pose - c.pose).max() > 1e-4
    assert a.video_path is None and a.frames is None


def test_reference_videos_and_camera_overrides(pipe, files):
    base = pipe.generate(files / "portrait.png", files / "speech.wav", seed=1, progress=False, keep_frames=True)
    ref = pipe.video_coefficients(files / "ref.mp4")
    assert ref.shape == (5, 73)
    blink = pipe.generate(files / "portrait.png", files / "speech.wav", seed=1, ref_eyeblink=str(files / "ref.mp4"),
                          progress=False)
    assert np.abs(blink.exp - base.exp).max() > 1e-5  # beta_0 comes from the reference video
    pose = pipe.generate(files / "portrait.png", files / "speech.wav", seed=1, ref_pose=str(files / "ref.mp4"),
                         progress=False)
    np.testing.assert_allclose(pose.exp, base.exp, atol=1e-6)
    tiled = np.concatenate([ref, ref])[:10, POSE]
    np.testing.assert_allclose(pose.pose - base.pose, tiled - tiled[:1], atol=1e-5)
    yaw = pipe.generate(files / "portrait.png", files / "speech.wav", seed=1, input_yaw=[0, 30], progress=False,
                        keep_frames=True)
    assert np.abs(yaw.frames.astype(float) - base.frames).mean() > 0.5  # the head turned


def test_batch_size_does_not_change_the_frames(pipe, files):
    a = pipe.generate(files / "portrait.png", files / "speech.wav", seed=0, batch_size=1, keep_frames=True,
                      progress=False)
    b = pipe.generate(files / "portrait.png", files / "speech.wav", seed=0, batch_size=4, keep_frames=True,
                      progress=False)
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 1


@pytest.mark.parametrize("sr,channels,fmt", [(8000, 1, "wav"), (48000, 2, "wav"), (16000, 1, "mp3"),
                                             (44100, 2, "m4a")])
def test_audio_formats_and_rates(pipe, files, tmp_path, sr, channels, fmt):
    import subprocess

    from sadtalker_lib.video import ffmpeg_exe

    wav = tmp_path / "in.wav"
    sf.write(wav, _speech(0.4, sr, channels), sr)
    path = wav
    if fmt != "wav":
        path = tmp_path / f"in.{fmt}"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(wav), str(path)], check=True)
    r = pipe.generate(files / "portrait.png", path, seed=0, progress=False)
    assert abs(r.num_frames - 10) <= 1


def test_image_variants(pipe, files, tmp_path):
    import imageio.v3 as iio

    img = skimage.data.astronaut()
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    grey = (img.mean(axis=2)).astype(np.uint8)
    deep = (img.astype(np.uint16) * 257)
    huge = np.kron(img, np.ones((6, 6, 1), np.uint8))  # 3072 x 3072
    import cv2

    for name, arr in [("rgba.png", rgba), ("grey.png", grey), ("deep.png", deep), ("huge.jpg", huge)]:
        if arr.dtype == np.uint16:  # PIL cannot write 16-bit RGB; OpenCV can (BGR order)
            cv2.imwrite(str(tmp_path / name), arr[..., ::-1])
        else:
            iio.imwrite(tmp_path / name, arr)
        src = pipe.prepare_source(tmp_path / name, "crop")
        assert src.image.shape == (256, 256, 3) and np.isfinite(src.coeffs).all(), name


def test_several_faces_picks_the_largest_and_says_so(pipe):
    import cv2

    img = skimage.data.astronaut()
    small = cv2.resize(img, (400, 400))
    canvas = np.full((512, 912, 3), 128, np.uint8)
    canvas[:, :512] = img
    canvas[56:456, 512:] = small
    with pytest.warns(MultipleFacesWarning):
        src = pipe.prepare_source(canvas, "crop")
    assert src.crop_info.crop[2] <= 560  # the crop is around the large face on the left


def test_bad_inputs_give_clear_errors(pipe, files, tmp_path, tiny_dir):
    grey = np.full((300, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError):
        pipe.generate(grey, files / "speech.wav", progress=False)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        pipe.generate(tmp_path / "empty.png", files / "speech.wav", progress=False)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError):
        pipe.generate(tmp_path / "junk.png", files / "speech.wav", progress=False)
    with pytest.raises(ImageLoadError, match="at least 64 px"):
        pipe.generate(np.zeros((20, 20, 3), np.uint8), files / "speech.wav", progress=False)
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="silent"):
        pipe.generate(files / "portrait.png", tmp_path / "silent.wav", progress=False)
    long = (np.random.default_rng(0).standard_normal(3601 * SR) * 0.01).astype(np.float32)
    with pytest.raises(AudioError, match="limit is 60 min"):
        pipe.generate(files / "portrait.png", (long, SR), progress=False)
    del long
    (tmp_path / "afile").write_text("x")
    with pytest.raises(VideoError, match="is a file"):
        pipe.generate(files / "portrait.png", files / "speech.wav", out=tmp_path / "afile" / "o.mp4", progress=False)
    with pytest.raises(ValueError, match="pose_style"):
        GenerationOptions(pose_style=46)


def test_a_failure_midway_leaves_no_video(pipe, files, tmp_path, monkeypatch):
    out = tmp_path / "o.mp4"

    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(pipe, "render", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        pipe.generate(files / "portrait.png", files / "speech.wav", out=out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoints_name_the_files(tmp_path, tiny_dir):
    with pytest.raises(CheckpointError, match="SadTalker_V0.0.2_256.safetensors, mapping_00229-model.pth.tar"):
        TalkingHeadPipeline.from_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match="SadTalker_V0.0.2_512.safetensors"):
        TalkingHeadPipeline.from_checkpoints(tiny_dir, size=512)
    with pytest.raises(CheckpointError, match="auido2exp_00300-model.pth"):
        TalkingHeadPipeline.from_checkpoints(tiny_dir, old_version=True)


def test_cli_generate(tiny_dir, files, tmp_path):
    from sadtalker_lib.cli import main

    out = tmp_path / "cli.mp4"
    rc = main(["generate", "--image", str(files / "portrait.png"), "--audio", str(files / "speech.wav"),
               "--checkpoints", str(tiny_dir), "--out", str(out), "--still", "--seed", "0"])
    assert rc == 0 and probe_video(out)["has_audio"]
    assert main(["generate", "--image", str(files / "portrait.png"), "--audio", str(files / "speech.wav"),
                 "--checkpoints", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_models_wrapper_steps_and_a_frame_range(pipe, files):
    """generate's steps are methods; the networks live in one Models; a frame range renders the same frames."""
    from sadtalker_lib.pipeline import Models

    assert isinstance(pipe.models, Models) and pipe.generator is pipe.models.generator
    assert pipe.device == torch.device("cpu") and pipe.models.dtype == torch.float32
    opts = GenerationOptions(seed=0, batch_size=2)
    aud = pipe.load_speech(files / "speech.wav")
    source = pipe.prepare_source(files / "portrait.png", "crop")
    pred = pipe.audio_to_coefficients(source, aud, opts)
    windows = pipe.driving_windows(source, pred.coeffs, opts)
    assert len(windows) == aud.num_frames == 10 and windows.source.shape == (70, 27)
    every = list(pipe.render_batches(source, pred.coeffs, opts, progress=False))
    part = list(pipe.render_batches(source, pred.coeffs, opts, start=3, stop=8, progress=False))
    assert [b.start for b in every] == [0, 2, 4, 6, 8] and [b.start for b in part] == [3, 5, 7]
    frames = torch.cat([b.frames for b in every])
    assert frames.shape == (10, 3, 256, 256)
    # other batch partners change only the float summation order (measured 3.1e-5 on frames)
    torch.testing.assert_close(torch.cat([b.frames for b in part]), frames[3:8], rtol=0, atol=1e-4)
    kp = torch.cat([b.kp_driving for b in every])
    torch.testing.assert_close(torch.cat([b.kp_driving for b in part]), kp[3:8], rtol=0, atol=1e-5)
    assert (frames[1:] - frames[:1]).abs().amax() > 1e-4  # the frames move


def test_models_precision_is_the_wrappers(tiny_dir, files):
    """dtype changes the renderer's arithmetic, not the interface: float32 frames back, close to float32's."""
    from sadtalker_lib.pipeline import Models

    f32 = TalkingHeadPipeline.from_checkpoints(tiny_dir, progress=False)
    f64 = TalkingHeadPipeline(models=Models.from_checkpoints(tiny_dir, dtype=torch.float64, progress=False))
    assert next(f64.generator.parameters()).dtype == torch.float64
    assert next(f64.regressor.parameters()).dtype == torch.float32  # the coefficient networks stay float32
    source = f32.prepare_source(files / "portrait.png", "crop")
    coeffs = np.random.default_rng(0).normal(size=(2, 70)).astype(np.float32) * 0.1
    opts = GenerationOptions(batch_size=2)
    a = next(f32.render_batches(source, coeffs, opts, progress=False)).frames
    b = next(f64.render_batches(source, coeffs, opts, progress=False)).frames
    assert a.dtype == b.dtype == torch.float32
    assert 0 < (a - b).abs().max() < 1e-3
