"""The real-video corpus (``data.corpus.build_video_corpus``): clips, people, identity-disjoint split, resuming.

Offline part: short videos synthesised here from two real portraits that installed packages ship (scikit-image's
astronaut, matplotlib's Grace Hopper), moved over the frames, with a tone as audio. The ``../shared`` part builds
from three short real clips (skipped when absent); it checks behaviour, not parity.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from sadtalker_lib.paths import shared_data_dir

CLIPS = shared_data_dir("clips")
SETTINGS = dict(size=64, max_seconds=1.0, fit_iterations=40, lip_iterations=30, progress=False)


def _portrait(name: str) -> np.ndarray:
    import cv2

    if name == "astronaut":
        from skimage import data

        img = data.astronaut()[:300, 80:380]
    else:
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = np.asarray(Image.open(f).convert("RGB"))[:360, 110:470]
    return cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)


def _moving_video(img: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The portrait shifted, turned and scaled a little per frame [n, 256, 256, 3]."""
    import cv2

    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    out = []
    for t in range(n):
        a = 2 * np.pi * t / n + phase
        m = cv2.getRotationMatrix2D((128, 128), 3 * np.sin(a), 1 + 0.03 * np.cos(a))
        m[:, 2] += (4 * np.cos(a), 3 * np.sin(2 * a))
        out.append(cv2.warpAffine(img, m, (256, 256), borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """astro_a.mp4 (audio track), astro_b.mp4 (silent) + astro_b.wav, hopper.mp4, noise.mp4 (no face), notes.txt."""
    from scipy.io import wavfile

    from sadtalker_lib.video import write_video

    d = tmp_path_factory.mktemp("videos")
    n = 30  # 1.2 s at 25 fps; the build keeps 1 s
    astro, hopper = _portrait("astronaut"), _portrait("hopper")
    write_video(d / "astro_a.mp4", _moving_video(astro, n, 0), audio=(_tone(1.2, 220), 16000))
    write_video(d / "astro_b.mp4", _moving_video(astro, n, 1))
    wavfile.write(d / "astro_b.wav", 16000, (_tone(1.2, 330) * 32767).astype(np.int16))
    write_video(d / "hopper.mp4", _moving_video(hopper, n, 2), audio=(_tone(1.2, 180), 16000))
    noise = np.random.default_rng(0).integers(0, 40, (n, 96, 96, 3), dtype=np.uint8)
    write_video(d / "noise.mp4", noise, audio=(_tone(1.2, 200), 16000))
    (d / "notes.txt").write_text("not a video")
    return d


@pytest.fixture(scope="module")
def built(video_dir, tmp_path_factory):
    from sadtalker_lib.data.corpus import build_video_corpus

    out = tmp_path_factory.mktemp("corpus")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = build_video_corpus(video_dir, out, workers=1, **SETTINGS)
    return out, json.loads(path.read_text())


def test_synthetic_videos_become_clips_with_people_and_a_disjoint_split(built):
    from sadtalker_lib.data.corpus import CorpusDataset, load_clip
    from sadtalker_lib.data.corpus.splits import identity_split
    from sadtalker_lib.data.corpus.video_checks import landmark_reprojection
    from sadtalker_lib.data.corpus.video_clip import MOUTH_DIMS

    out, index = built
    by_src = {c["source"]: c for c in index["clips"]}
    assert sorted(by_src) == ["astro_a.mp4", "astro_b.mp4", "hopper.mp4"]
    assert [s["file"] for s in index["skipped"]] == ["noise.mp4"] and "face" in index["skipped"][0]["reason"]
    assert by_src["astro_b.mp4"]["audio_source"] == "astro_b.wav" and by_src["astro_a.mp4"]["audio_source"] == "track"
    # the two astronaut clips are one person, Grace Hopper another (dlib descriptors, distance 0.6)
    assert by_src["astro_a.mp4"]["identity_id"] == by_src["astro_b.mp4"]["identity_id"]
    assert by_src["hopper.mp4"]["identity_id"] != by_src["astro_a.mp4"]["identity_id"]
    assert len(index["identities"]) == 2
    split = index["split"]
    assert split["identity_disjoint"] and not set(split["train_identities"]) & set(split["heldout_identities"])
    people = {c["id"]: c["identity_id"] for c in index["clips"]}
    assert not {people[i] for i in split["train"]} & {people[i] for i in split["heldout"]}
    assert split == identity_split(index, **index["split_settings"]).to_json()  # reproducible

    a = load_clip(out, by_src["astro_a.mp4"])
    t = by_src["astro_a.mp4"]["n_frames"]
    assert t == 25 and a["frames"].shape == (t, 64, 64, 3) and a["audio"].shape == (t * 640,)
    assert a["mel"].shape == (t, 1, 80, 16) and a["coeffs"].shape == (t, 70) and np.isfinite(a["coeffs"]).all()
    assert (a["landmarks"] > 0).all() and (a["landmarks"] < 64).all()
    assert a["eye_ratio"].shape == (t,) and ((a["blink"] >= 0) & (a["blink"] <= 1)).all()
    assert a["id_coeff"].shape == (80,) and a["face_descriptors"].shape == (5, 128)
    # the moving portrait moves the fitted head pose; the lip-only target keeps non-mouth expression at frame 0
    assert np.ptp(a["coeffs"][:, 64:67], axis=0).max() > 0.01
    other = [d for d in range(64) if d not in MOUTH_DIMS]
    assert np.allclose(a["exp_lip"][:, other], a["coeffs"][0, other], atol=1e-6)
    assert by_src["astro_a.mp4"]["fit_error_px_224"] < 4.0
    check = landmark_reprojection(out, by_src["astro_a.mp4"], index)  # re-derived from the stored arrays
    assert check["fitted"] == pytest.approx(by_src["astro_a.mp4"]["fit_error_px_224"], abs=0.05)
    assert CorpusDataset(out, window=5)[0]["mel"].shape == (5, 1, 80, 16)


def test_second_build_reuses_clips_and_an_interrupted_build_resumes(built, video_dir):
    from sadtalker_lib.data.corpus import build_video_corpus

    out, index = built
    files = {c["source"]: out / c["file"] for c in index["clips"]}
    before = {k: p.stat().st_mtime_ns for k, p in files.items()}
    # "killed" while hopper.mp4 was being made: its files are missing
    files["hopper.mp4"].unlink()
    files["hopper.mp4"].with_suffix(".json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index2 = json.loads(build_video_corpus(video_dir, out, workers=1, **SETTINGS).read_text())
    after = {k: p.stat().st_mtime_ns for k, p in files.items()}
    assert after["astro_a.mp4"] == before["astro_a.mp4"] and after["astro_b.mp4"] == before["astro_b.mp4"]
    assert files["hopper.mp4"].is_file() and after["hopper.mp4"] != before["hopper.mp4"]
    assert [c["source"] for c in index2["clips"]] == [c["source"] for c in index["clips"]]
    assert index2["split"] == index["split"]


def test_cli_builds_the_same_corpus(built, video_dir, capsys):
    from sadtalker_lib.cli import main

    out, index = built
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["corpus", "build", "--videos", str(video_dir), "--out", str(out), "--size", "64",
                     "--max-seconds", "1", "--fit-iterations", "40", "--lip-iterations", "30", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3 clips, 2 people, 1 skipped" in printed and "skipped noise.mp4" in printed
    again = json.loads((out / "corpus.json").read_text())
    assert [c["identity_id"] for c in again["clips"]] == [c["identity_id"] for c in index["clips"]]


def test_people_csv_overrides_the_clustering(built, video_dir, tmp_path):
    from sadtalker_lib.data.corpus import build_video_corpus

    out, _ = built
    csv = tmp_path / "people.csv"
    csv.write_text("file,person\nastro_a.mp4,eileen\nhopper,grace\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = json.loads(build_video_corpus(video_dir, out, workers=1, people_csv=csv, **SETTINGS).read_text())
    names = {c["source"]: c["identity"] for c in index["clips"]}
    assert names == {"astro_a.mp4": "eileen", "astro_b.mp4": "eileen", "hopper.mp4": "grace"}  # b joins a
    assert index["identity_assignment"]["clips"] == {"csv": 2, "joined": 1, "clustered": 0, "no_embedding": 0}
    with pytest.raises(FileNotFoundError, match="people file"):
        build_video_corpus(video_dir, out, people_csv=tmp_path / "missing.csv", **SETTINGS)


def test_folders_without_usable_videos_are_errors(video_dir, tmp_path):
    import shutil

    from sadtalker_lib.data.corpus import build_video_corpus

    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no videos"):
        build_video_corpus(tmp_path / "texts", tmp_path / "c1", **SETTINGS)
    with pytest.raises(FileNotFoundError, match="no videos"):
        build_video_corpus(tmp_path / "missing", tmp_path / "c2", **SETTINGS)
    (tmp_path / "faceless").mkdir()
    shutil.copy(video_dir / "noise.mp4", tmp_path / "faceless")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no usable clip"):
            build_video_corpus(tmp_path / "faceless", tmp_path / "c3", **SETTINGS)


def test_cluster_embeddings_and_people_csv_parsing(tmp_path):
    from sadtalker_lib.data.corpus import clip_distance, cluster_embeddings, read_people_csv

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 128))
    centres *= 1.0 / np.linalg.norm(centres, axis=1, keepdims=True)  # people ~1.4 apart
    x = np.concatenate([c + rng.normal(scale=0.01, size=(4, 128)) for c in centres])[[0, 4, 8, 1, 5, 9, 2, 3]]
    assert cluster_embeddings(x).tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    assert cluster_embeddings(x, threshold=5.0).tolist() == [0] * 8
    # several frame descriptors per clip: the clip distance is the mean over frame pairs (dlib's single-face scale)
    frames = [c + rng.normal(scale=0.02, size=(5, 128)) for c in centres[[0, 1, 0]]]
    assert cluster_embeddings(frames).tolist() == [0, 1, 0]
    assert clip_distance(frames[0], frames[2]) < 0.6 < clip_distance(frames[0], frames[1])
    (tmp_path / "p.csv").write_text("a.mp4, Ann\n# comment\nb,Bob\n")
    assert read_people_csv(tmp_path / "p.csv") == {"a.mp4": "Ann", "b": "Bob"}
    (tmp_path / "bad.csv").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="file,person"):
        read_people_csv(tmp_path / "bad.csv")


def test_fit_mouth_reads_the_mouth_and_freezes_the_rest():
    """Landmarks made by the face model: jaw opening, a brow raise and head turns vary; the lip-only refit
    follows the jaw, keeps the brow at frame 0 and is not moved by the head turns."""
    import torch

    from sadtalker_lib.data.visemes import EXPRESSION_DIMS
    from sadtalker_lib.morphable.fit import FitConfig, default_model, fit_landmarks, fit_mouth
    from sadtalker_lib.morphable.model import official_image_rows
    from sadtalker_lib.data.corpus.video_clip import MOUTH_DIMS

    model = default_model()
    t = 24
    s = np.linspace(0, 2 * np.pi, t)
    exp = torch.zeros(t, 64)
    exp[:, EXPRESSION_DIMS["jaw_open"]] = torch.as_tensor(0.8 * (1 + np.sin(3 * s)) / 2, dtype=torch.float32)
    exp[:, EXPRESSION_DIMS["brows_raise"]] = torch.as_tensor(0.8 * (1 + np.cos(s)) / 2, dtype=torch.float32)
    angle = torch.zeros(t, 3)
    angle[:, 1] = torch.as_tensor(0.25 * np.sin(2 * s), dtype=torch.float32)
    trans = torch.zeros(t, 3)
    with torch.no_grad():
        v = model.project_landmarks(torch.zeros(t, 80), exp, angle, trans)
    target = torch.stack([v[..., 0], official_image_rows(v[..., 1], 224)], -1).numpy()
    full = fit_landmarks(target, config=FitConfig(iterations=200, rigid_iterations=40), video=True)
    lip = fit_mouth(full, MOUTH_DIMS, iterations=80)
    jaw, brow = EXPRESSION_DIMS["jaw_open"], EXPRESSION_DIMS["brows_raise"]
    assert np.corrcoef(lip.expression[:, jaw], exp[:, jaw].numpy())[0, 1] > 0.95
    assert np.allclose(lip.expression[:, brow], full.expression[0, brow])  # brow frozen at frame 0
    assert np.ptp(full.expression[:, brow]) > 0.3  # ... though the full fit moves it
    assert lip.mean_error_px < 1.0
    with pytest.raises(ValueError, match="mouth_dims"):
        fit_mouth(full, [70])


@pytest.mark.skipif(not (CLIPS / "retalking_face_3.mp4").is_file(), reason=f"real clips not found in {CLIPS}")
def test_real_clips_two_workers(tmp_path):
    """Three real clips (two of A. Ocasio-Cortez from different sources, one other man) in two processes."""
    from sadtalker_lib.data.corpus import build_video_corpus
    from sadtalker_lib.data.corpus.video_checks import corpus_reprojection

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("retalking_face_2.mp4", "retalking_face_3.mp4", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"):
        (videos / name).symlink_to(CLIPS / name)
    path = build_video_corpus(videos, tmp_path / "corpus", workers=2, **SETTINGS)
    index = json.loads(path.read_text())
    ids = {c["source"]: c["identity_id"] for c in index["clips"]}
    assert len(ids) == 3 and not index["skipped"]
    assert ids["retalking_face_3.mp4"] == ids["sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"]
    assert ids["retalking_face_2.mp4"] != ids["retalking_face_3.mp4"]
    assert index["split"]["identity_disjoint"]
    assert all(c["fit_error_px_224"] < 3.0 and c["frames_without_face"] == 0 for c in index["clips"])
    # the coefficients track the landmarks: well below keeping frame 0's expression (same pose), and the lip-only
    # target reproduces the lips better than frame 0's mouth does
    for clip, r in corpus_reprojection(tmp_path / "corpus")["clips"].items():
        assert r["fitted"] < 0.7 * r["frame0_expression"], (clip, r)
        assert r["mouth_lip_only"] < 0.8 * r["mouth_frame0"], (clip, r)
