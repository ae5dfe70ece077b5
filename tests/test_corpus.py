"""Corpus builders (issue 6 part 1): eSpeak NG speech, the viseme teacher, motion styles, the portrait
renderer, the default corpus, the video corpus and the windowed dataset."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from conftest import SHARED, espeak_available, needs_espeak
from sadtalker_lib.data import motion as M
from sadtalker_lib.data import visemes as V


CLIPS = SHARED / "data" / "clips"
SENTENCE = "Bob bought a map, my mom pays Paul a bamboo bag."


def _fake_speech(seed: int, seconds: float = 8.0, sr: int = 16000) -> np.ndarray:
    """Syllable-like bursts (~3.5 Hz) with pauses: enough to drive the energy coupling without a TTS."""
    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * (3.5 + r.uniform(-0.5, 0.5)) * t), 0, None)
    env *= np.sin(2 * np.pi * 0.25 * t + r.uniform(0, 6)) > -0.3
    return (0.3 * env * r.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# TTS
# ---------------------------------------------------------------------------------------------
@needs_espeak
def test_tts_speech_and_phoneme_times():
    from sadtalker_lib.data.tts import synthesize

    from sadtalker_lib.audio import DEFAULT_CONFIG

    s = synthesize(SENTENCE, "en+f3", rate_wpm=175, pitch=50)
    assert s.sample_rate == 16000 == DEFAULT_CONFIG.sample_rate and s.samples.dtype == np.float32
    assert 1.5 < s.duration_ms / 1000 < 6.0
    assert np.sqrt(np.mean(s.samples ** 2)) > 0.02  # not silent
    assert np.abs(s.samples).max() <= 1.0
    starts = np.array([p[1] for p in s.phonemes])
    ends = np.array([p[2] for p in s.phonemes])
    assert (ends > starts).all() and (starts[1:] >= ends[:-1] - 1e-6).all()  # monotone, non-overlapping
    assert starts[0] >= 0 and ends[-1] <= s.duration_ms + 1e-6
    names = [p[0] for p in s.phonemes]
    assert {"b", "m", "p"} <= set(names) and any(V.is_vowel(n) for n in names)
    again = synthesize(SENTENCE, "en+f3", rate_wpm=175, pitch=50)  # a fresh worker: bit-identical
    assert np.array_equal(s.samples, again.samples) and s.phonemes == again.phonemes


@needs_espeak
def test_tts_is_independent_of_earlier_utterances_and_load():
    """eSpeak NG carries state from one utterance to the next inside a process (pitch flutter, gain control, breath
    noise from rand(), echo; see tts.py), so sentence A must come out bit-identical after other languages, voices
    and variants were spoken (in workers and in this process's own engine), and while another process burns CPU."""
    import subprocess
    import sys

    from sadtalker_lib.data.tts import synthesize

    first = synthesize(SENTENCE, "en+f3")
    for text, voice in (("Guten Morgen, wie geht es dir?", "de"), ("Bonjour, comment allez-vous ?", "fr+m2"),
                        ("Hola, buenos días.", "es+f1"), (SENTENCE, "en+m3")):
        synthesize(text, voice, rate_wpm=200, pitch=70)
        synthesize(text, voice, rate_wpm=150, pitch=30, isolated=False)  # state left in this process too
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = [synthesize(SENTENCE, "en+f3") for _ in range(2)]
    finally:
        burner.kill()
        burner.wait()
    for again in loaded:
        assert again.samples.shape == first.samples.shape
        assert np.array_equal(first.samples, again.samples) and first.phonemes == again.phonemes


@needs_espeak
def test_tts_bad_input():
    from sadtalker_lib.data.tts import TTSError, synthesize

    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")
    with pytest.raises(ValueError, match="rate_wpm"):
        synthesize("hello", rate_wpm=20)
    with pytest.raises(TTSError, match="unknown eSpeak NG voice"):
        synthesize("hello", voice="no-such-voice")


@needs_espeak
def test_tts_cli_fallback_and_missing_espeak(monkeypatch):
    import shutil as _shutil

    from sadtalker_lib.data import tts

    monkeypatch.setattr(tts, "_load_library", lambda: None)  # as if libespeak-ng.so.1 could not be loaded
    if _shutil.which("espeak-ng"):
        s = tts.synthesize("Bob bought a map.", "en")
        assert s.backend == "cli" and s.sample_rate == 16000 and np.abs(s.samples).max() > 0.05
        starts, ends = np.array([p[1] for p in s.phonemes]), np.array([p[2] for p in s.phonemes])
        assert (ends > starts).all() and (starts[1:] >= ends[:-1] - 1e-6).all() and ends[-1] <= s.duration_ms + 1e-6
        assert "b" in [p[0] for p in s.phonemes]
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(tts.TTSError, match="apt-get install espeak-ng"):
        tts.synthesize("hello")


# ---------------------------------------------------------------------------------------------
# Viseme teacher
# ---------------------------------------------------------------------------------------------
def test_teacher_closes_bilabials_and_opens_vowels_synthetic():
    ph = [("_", 0, 200), ("m", 200, 320), ("a", 320, 520), ("p", 520, 640), ("a", 640, 840), ("b", 840, 960),
          ("u", 960, 1160), ("_", 1160, 1400)]
    n = 35
    p = V.lip_params(ph, n)
    frame = lambda ms: int(ms // 40)  # noqa: E731
    jaw = p[:, V.LIP_PARAMS.index("jaw_open")]
    for vowel_ms, bilabial_ms in ((420, 260), (740, 580), (740, 900)):
        assert jaw[frame(vowel_ms)] > jaw[frame(bilabial_ms)] + 0.3
    assert p[frame(1060), V.LIP_PARAMS.index("pucker")] > 0.5  # /u/ rounds
    exp = V.teacher_expression(ph, n)
    assert exp.shape == (n, 64)
    lip_dims = {V.EXPRESSION_DIMS[d] for d, _ in V.LIP_TO_EXPRESSION.values()}
    assert not np.any(exp[:, [i for i in range(64) if i not in lip_dims]])  # lip-only


@needs_espeak
def test_teacher_jaw_on_real_speech():
    from sadtalker_lib.data.tts import synthesize

    s = synthesize(SENTENCE, "en")
    n = len(s.samples) // 640
    jaw = V.lip_params(s.phonemes, n)[:, 0]
    centre_ms = (np.arange(n) + 0.5) * 40
    label = [next((name for name, a, b in s.phonemes if a <= c < b), "_") for c in centre_ms]
    vowel = np.mean([jaw[i] for i in range(n) if V.is_vowel(label[i])])
    bilabial = np.mean([jaw[i] for i in range(n) if label[i] in ("p", "b", "m")])
    assert vowel > 2 * bilabial, (vowel, bilabial)


# ---------------------------------------------------------------------------------------------
# Motion styles and blinks
# ---------------------------------------------------------------------------------------------
def test_motion_styles_are_distinct_and_deterministic():
    n_styles = len(M.MOTION_STYLES)
    assert n_styles >= 6
    def pose(s, seed):  # nods at the loudness rises (the onset peaks cost more; they are tested below)
        return M.generate_motion(200, s, seed, _fake_speech(seed), nod_source="energy").pose

    feats = {s: np.stack([M.motion_features(pose(s, seed)) for seed in range(8)]) for s in range(n_styles)}
    allf = np.concatenate(list(feats.values()))
    mu, sd = allf.mean(0), allf.std(0) + 1e-9
    centroids = {s: ((f[:4] - mu) / sd).mean(0) for s, f in feats.items()}
    hits = [min(centroids, key=lambda c: np.sum(((f - mu) / sd - centroids[c]) ** 2)) == s
            for s, fs in feats.items() for f in fs[4:]]
    assert np.mean(hits) >= 0.85, f"held-out style recognition {np.mean(hits):.2f}"
    # a few readable facts about the styles
    std = {M.MOTION_STYLES[s].name: f[:, 3:6].mean(0) for s, f in feats.items()}  # pitch, yaw, roll std
    assert std["still"].max() < std["calm"].min() * 1.5 and std["energetic"].sum() > 3 * std["calm"].sum()
    assert std["nodding"][0] > 1.5 * std["nodding"][1] and std["shaking"][1] > 2 * std["shaking"][0]
    assert feats[M.STYLE_IDS["tilted"]][:, 2].mean() > 0.1  # mean roll
    a = M.generate_motion(100, "nodding", 3, _fake_speech(3))
    b = M.generate_motion(100, "nodding", 3, _fake_speech(3))
    c = M.generate_motion(100, "nodding", 4, _fake_speech(3))
    assert np.array_equal(a.pose, b.pose) and np.array_equal(a.blink, b.blink) and not np.array_equal(a.pose, c.pose)
    assert a.pose.shape == (100, 6) and a.pose.dtype == np.float32
    with pytest.raises(ValueError, match="unknown motion style"):
        M.generate_motion(10, "moonwalk")


def test_motion_follows_speech_energy():
    speech = _fake_speech(0, 8.0)
    speech[: 4 * 16000] *= 0.001  # first half nearly silent
    pose = M.head_motion(200, "energetic", 0, M.speech_energy(speech, 200))
    assert pose[100:, :3].std(0).sum() > 1.5 * pose[:100, :3].std(0).sum()


def test_blinks():
    r = M.blink_ratio(750, seed=0, blinks_per_min=15)
    assert r.shape == (750,) and set(np.unique(r)) <= set(np.float32((0.0, 0.5, 0.9, 1.0)))
    n_blinks = int((r == 1.0).sum())
    assert 3 <= n_blinks <= 14  # 30 s at ~15 / min
    exp = M.blink_expression(r)
    dims = [V.EXPRESSION_DIMS[d] for d in V.BLINK_DIMS]
    assert np.array_equal(exp[:, dims[0]], r) and np.array_equal(exp[:, dims[1]], r)
    assert not np.any(np.delete(exp, dims, axis=1))


# ---------------------------------------------------------------------------------------------
# Renderer
# ---------------------------------------------------------------------------------------------
def test_render_moves_mouth_eyes_and_head():
    from sadtalker_lib.data.render import PortraitAnimator, default_portrait

    anim = PortraitAnimator(default_portrait(128))
    neutral = np.zeros(70)
    frame0, lm0 = anim.render(neutral)
    assert frame0.shape == (128, 128, 3) and frame0.dtype == np.uint8 and lm0.shape == (68, 2)
    assert np.allclose(lm0, anim.rest, atol=1e-3)
    open_ = neutral.copy()
    open_[:64] = V.params_to_expression(np.array(V.viseme("a").target))
    frame1, lm1 = anim.render(open_)
    gap0 = (lm0[[67, 66, 65], 1] - lm0[[61, 62, 63], 1]).mean()
    gap1 = (lm1[[67, 66, 65], 1] - lm1[[61, 62, 63], 1]).mean()
    assert gap1 > gap0 + 3  # px at 128
    x0, y0 = lm1[60:68].min(0).astype(int)
    x1, y1 = lm1[60:68].max(0).astype(int) + 1
    assert frame1[y0:y1, x0:x1].mean() < frame0[y0:y1, x0:x1].mean() - 10  # dark open mouth
    blink = neutral.copy()
    blink[:64] = M.blink_expression(np.float32(1.0))
    lm_b = anim.landmarks(blink)
    assert (lm_b[[41, 40], 1] - lm_b[[37, 38], 1]).mean() < 0.4 * (lm0[[41, 40], 1] - lm0[[37, 38], 1]).mean()
    yaw = neutral.copy()
    yaw[64 + M.POSE_NAMES.index("yaw")] = 0.3
    assert anim.landmarks(yaw)[30, 0] > lm0[30, 0] + 3  # the nose turns to the image's right
    frames, lms = anim.render_sequence(np.stack([neutral, open_, yaw]))
    assert frames.shape == (3, 128, 128, 3) and np.array_equal(frames[1], frame1)
    with pytest.raises(ValueError, match=r"\[70\]"):
        anim.render(np.zeros(64))
    with pytest.raises(ValueError, match="NaN"):
        anim.render(np.full(70, np.nan))


# ---------------------------------------------------------------------------------------------
# Default corpus + dataset
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    if not espeak_available():
        pytest.skip("eSpeak NG not installed (apt-get install espeak-ng)")
    from sadtalker_lib.data import build_default_corpus

    root = tmp_path_factory.mktemp("default_corpus")
    build_default_corpus(root / "a", n_clips=2, seed=0, size=64, max_seconds=1.4, progress=False)
    return root


def test_default_corpus_is_deterministic(tiny_corpus, tmp_path):
    from sadtalker_lib.data import build_default_corpus, load_clip, load_index

    index = load_index(tiny_corpus / "a")
    assert index["kind"] == "default" and len(index["clips"]) == 2 and index["fps"] == 25
    assert index["clips"][0]["language"] != index["clips"][1]["language"]
    assert index["clips"][0]["style_id"] != index["clips"][1]["style_id"]
    build_default_corpus(tmp_path / "b", n_clips=2, seed=0, size=64, max_seconds=1.4, progress=False)
    build_default_corpus(tmp_path / "c", n_clips=1, seed=1, size=64, max_seconds=1.4, progress=False)
    for k in range(2):
        a, b = load_clip(tiny_corpus / "a", k), load_clip(tmp_path / "b", k)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), key
    a = load_clip(tiny_corpus / "a", 0)
    t = a["coeffs"].shape[0]
    assert t == 35
    assert a["frames"].shape == (t, 64, 64, 3) and a["frames"].dtype == np.uint8
    assert a["audio"].shape == (t * 640,) and a["mel"].shape == (t, 1, 80, 16)
    assert a["landmarks"].shape == (t, 68, 2) and a["blink"].shape == (t,) and a["exp_lip"].shape == (t, 64)
    assert np.isfinite(a["coeffs"]).all() and np.abs(a["coeffs"][:, 0]).max() > 0.3  # the jaw moves
    assert not np.array_equal(load_clip(tmp_path / "c", 0)["coeffs"], a["coeffs"])


def test_dataset_windows(tiny_corpus):
    from torch.utils.data import DataLoader

    from sadtalker_lib.data import CorpusDataset

    ds = CorpusDataset(tiny_corpus / "a", window=5, with_frames=True)
    assert len(ds) == 2 * (35 - 5 + 1)
    item = ds[3]
    assert item["mel"].shape == (5, 1, 80, 16) and item["coeffs"].shape == (5, 70)
    assert item["exp_lip"].shape == (5, 64) and item["blink"].shape == (5, 1)
    assert item["landmarks"].shape == (5, 68, 2) and item["ref_coeffs"].shape == (70,)
    assert item["frames"].shape == (5, 3, 64, 64)
    assert 0 <= float(item["frames"].min()) <= float(item["frames"].max()) <= 1
    assert int(item["start"]) == 3
    batch = next(iter(DataLoader(CorpusDataset(tiny_corpus / "a", window=32, stride=2), batch_size=4)))
    assert batch["mel"].shape == (4, 32, 1, 80, 16) and batch["coeffs"].shape == (4, 32, 70)
    assert batch["style_id"].shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="at least 40 frames"):
            CorpusDataset(tiny_corpus / "a", window=40)
    with pytest.raises(FileNotFoundError, match="corpus.json"):
        CorpusDataset(tiny_corpus / "missing")


# ---------------------------------------------------------------------------------------------
# Video corpus (real clip, ~2 s)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (CLIPS / "retalking_face_2.mp4").is_file(), reason=f"real clips not found in {CLIPS}")
def test_video_corpus_on_a_real_clip(tmp_path):
    from sadtalker_lib.data import CorpusDataset, build_video_corpus, load_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(CLIPS / "retalking_face_2.mp4", videos)
    (videos / "notes.txt").write_text("not a video")
    path = build_video_corpus(videos, tmp_path / "corpus", size=64, max_seconds=2.0, fit_iterations=60,
                              progress=False)
    index = json.loads(path.read_text())
    assert index["kind"] == "video" and len(index["clips"]) == 1
    entry = index["clips"][0]
    assert entry["coeffs_fitted"] and entry["n_frames"] == 50 and entry["fit_error_px_224"] < 3.0
    a = load_clip(tmp_path / "corpus", 0)
    assert a["frames"].shape == (50, 64, 64, 3) and a["audio"].shape == (50 * 640,)
    assert a["mel"].shape == (50, 1, 80, 16) and a["coeffs"].shape == (50, 70)
    assert np.isfinite(a["coeffs"]).all() and np.abs(a["coeffs"]).max() > 0
    lm = a["landmarks"]
    assert (lm > 0).all() and (lm < 64).all()  # the face is inside the crop in every frame
    assert np.sqrt(np.mean(a["audio"] ** 2)) > 0.01
    assert ((a["blink"] >= 0) & (a["blink"] <= 1)).all()
    item = CorpusDataset(tmp_path / "corpus", window=32)[0]
    assert item["mel"].shape == (32, 1, 80, 16)
    with pytest.raises(FileNotFoundError, match="no videos"):
        build_video_corpus(tmp_path / "empty_or_missing", tmp_path / "x", progress=False)


def test_rest_expression_is_drawn_per_identity_and_can_be_switched_off():
    from sadtalker_lib.data.corpus import plan_default_corpus, rest_expression_vector
    from sadtalker_lib.data.visemes import EXPRESSION_DIMS

    plans = plan_default_corpus(12, seed=3, n_identities=3)
    assert plans[0].rest_expression == plan_default_corpus(12, seed=3, n_identities=3)[0].rest_expression
    vecs = np.stack([rest_expression_vector(p.rest_expression) for p in plans])
    ids = np.array([p.identity_id for p in plans])
    assert len({tuple(sorted(p.rest_expression.items())) for p in plans}) == len(plans)  # a per-clip part too
    means = np.stack([vecs[ids == i].mean(0) for i in range(3)])
    within = np.sqrt(np.mean([np.sum((v - means[i]) ** 2) for v, i in zip(vecs, ids)]))
    between = np.sqrt(np.mean(np.sum((means - means.mean(0)) ** 2, 1)))
    assert between > 1.5 * within, (between, within)  # a person's rest dominates the clip's mood
    vec = rest_expression_vector({"lip_corners_up": 0.5, "brows_lower": 0.25})
    assert vec.shape == (64,) and vec[EXPRESSION_DIMS["lip_corners_up"]] == 0.5
    assert vec[EXPRESSION_DIMS["brows_lower"]] == 0.25 and np.count_nonzero(vec) == 2
    # the knob at 0 and the switch remove it; the other fields do not depend on them
    for off in (plan_default_corpus(12, seed=3, n_identities=3, rest_expressions=False),
                plan_default_corpus(12, seed=3, n_identities=3, phenomena={"rest_spread": 0.0})):
        assert all(p.rest_expression == {} for p in off)
        assert [p.text for p in off] == [p.text for p in plans]
        assert [p.motion_seed for p in off] == [p.motion_seed for p in plans]


# ---------------------------------------------------------------------------------------------
# The controlled phenomena: present by construction, removed by their knob at 0
# ---------------------------------------------------------------------------------------------
def test_phenomena_knobs_are_checked():
    from sadtalker_lib.data.corpus import Phenomena

    assert Phenomena.coerce({"smiles": 0.0}).smiles == 0.0 and Phenomena.coerce(None) == Phenomena()
    off = Phenomena.none()
    assert off.identity_variants == 0 and off.speech_nods == 0 and off.expression_drift == 0
    with pytest.raises(ValueError, match=">= 0"):
        Phenomena(speech_nods=-1.0)
    with pytest.raises(ValueError, match="nod_source"):
        Phenomena(nod_source="random")


def test_expression_drift_is_audio_irrelevant_and_starts_at_rest():
    n = 250
    drift = M.expression_drift(n, seed=4)
    assert drift.shape == (n, 64) and not drift[0].any()  # frame 0 (beta_0's frame) stays the rest
    dims = [V.EXPRESSION_DIMS[d] for d in M.DRIFT_DIRECTIONS]
    smile = V.EXPRESSION_DIMS[M.SMILE_DIRECTION]
    assert drift[:, dims].std(0).min() > 0.03 and drift[:, smile].max() > 0.3  # drifts and a smile episode
    assert not np.delete(drift, dims + [smile], axis=1).any()  # nothing else (no lip / blink dims)
    assert np.array_equal(M.expression_drift(n, seed=4), drift) and not np.array_equal(M.expression_drift(n, 5), drift)
    only_smiles = M.expression_drift(n, seed=4, drift=0.0)
    assert not only_smiles[:, dims].any() and np.array_equal(only_smiles[:, smile], drift[:, smile])
    assert not M.expression_drift(n, seed=4, drift=0.0, smiles=0.0).any()


def test_pause_breaths_open_the_jaw_in_long_pauses_only():
    jaw = V.EXPRESSION_DIMS[V.LIP_TO_EXPRESSION["jaw_open"][0]]
    phonemes = [("_", 0, 200), ("a", 200, 600), ("_", 600, 900), ("m", 900, 1000), ("_", 1000, 1080),
                ("o", 1080, 1400), ("_", 1400, 1700)]
    n = 40  # 1.6 s at 25 fps
    b = M.pause_breaths(phonemes, n, seed=1)
    assert b.shape == (n, 64) and not np.delete(b, jaw, axis=1).any()  # the jaw only
    opened = np.flatnonzero(b[:, jaw] > 0)
    assert set(opened) <= set(range(15, 23)) | set(range(35, 43)) and opened.min() < 23 and opened.max() >= 36
    assert not b[:15].any()  # not in the leading silence (frame 0 stays the rest) nor the 80 ms pause
    assert np.allclose(M.pause_breaths(phonemes, n, seed=1, scale=2.0), 2 * b)
    assert not M.pause_breaths(phonemes, n, seed=1, scale=0.0).any()
    peak = b[:, jaw].max() / V.LIP_TO_EXPRESSION["jaw_open"][1]
    assert M.BREATH_JAW_OPEN[0] * 0.7 < peak <= M.BREATH_JAW_OPEN[1]


@needs_espeak
def test_default_corpus_pause_breaths_knob(tmp_path):
    """pause_breaths=1: the real coefficients = the lip-only target + blinks + drifts + the breaths, which open the
    jaw in some clip's pause."""
    from sadtalker_lib.data import build_default_corpus, load_clip, load_index
    from sadtalker_lib.data.corpus import Phenomena

    build_default_corpus(tmp_path / "b", n_clips=2, seed=0, size=64, max_seconds=3.0, progress=False,
                         phenomena=Phenomena(pause_breaths=1.0))
    index = load_index(tmp_path / "b")
    assert index["phenomena"]["pause_breaths"] == 1.0
    total = 0.0
    for k, entry in enumerate(index["clips"]):
        c = load_clip(tmp_path / "b", k)
        n = len(c["coeffs"])
        phonemes = [(str(a), float(t0), float(t1)) for a, (t0, t1) in zip(c["phonemes"], c["phoneme_ms"])]
        breaths = M.pause_breaths(phonemes, n, entry["motion_seed"])
        rebuilt = c["exp_lip"] + M.blink_expression(c["blink"]) + M.expression_drift(n, entry["motion_seed"]) + breaths
        assert np.allclose(c["coeffs"][:, :64], rebuilt, atol=1e-5)
        total += float(breaths.sum())
    assert total > 0.5  # at least one breath in the two clips


def test_speech_locked_nods_follow_onsets_and_their_knob_removes_them():
    from sadtalker_lib.data.corpus.phenomena import onset_velocity_correlation

    audio = [_fake_speech(s, 6.0) for s in range(5)]
    for style in ("nodding", "calm"):
        corr = {}
        for nods in (1.0, 0.0):  # loudness coupling off: only the nods can follow the speech
            poses = [M.generate_motion(150, style, s, a, nod_scale=nods, energy_scale=0.0).pose
                     for s, a in enumerate(audio)]
            corr[nods] = onset_velocity_correlation(poses, audio, 16000, 25)
        assert abs(corr[1.0]["r"]) > 0.15 and abs(corr[1.0]["r"]) > corr[1.0]["abs_r_shuffled"] + 0.1, corr
        assert abs(corr[0.0]["r"]) < 0.1, corr
    # without the free motion the nods are the only difference, and they pause at their anchors (speed 0)
    energy = M.speech_energy(audio[0], 150)
    anchors = M.nod_frames(150, energy)
    with_nods = M.head_motion(150, "nodding", 0, energy, nods_at=anchors, free_scale=0.0)
    without = M.head_motion(150, "nodding", 0, energy, nods_at=anchors, nod_scale=0.0, free_scale=0.0)
    diff = with_nods - without
    assert np.abs(diff[:, 0]).max() > 0.05 and not diff[:, [1, 2, 3, 5]].any()  # pitch (and ty, which follows)
    speed = np.abs(np.diff(diff[:, 0]))
    assert len(anchors) >= 4 and all(speed[max(a - 1, 0): a + 1].min() < 0.2 * speed.max() for a in anchors[1:-1])
    # with the free motion, the whole head slows down on the accents (the motion beats of Beat Align)
    rel = {1.0: [], 0.0: []}
    for seed in range(4):
        energy = M.speech_energy(_fake_speech(seed, 6.0), 150)
        anchors = M.nod_frames(150, energy)
        for style in ("energetic", "calm", "swaying"):
            for nods in rel:
                pose = M.head_motion(150, style, seed, energy, nods_at=anchors, nod_scale=nods)
                speed = np.linalg.norm(np.diff(pose[:, :3], axis=0), axis=1)
                rel[nods].append(np.mean([speed[max(a - 1, 0): a + 1].min() for a in anchors[1:-1]]) / speed.mean())
    assert np.mean(rel[1.0]) < 0.7 * np.mean(rel[0.0]), rel


def test_nod_direction_down_gives_every_nod_the_same_sign():
    from sadtalker_lib.data.corpus import Phenomena

    energy = M.speech_energy(_fake_speech(1, 6.0), 150)
    anchors = M.nod_frames(150, energy)
    assert len(anchors) >= 4
    nods = {}
    for direction in M.NOD_DIRECTIONS:
        with_nods = M.head_motion(150, "nodding", 0, energy, nods_at=anchors, free_scale=0.0, nod_direction=direction)
        nods[direction] = (with_nods - M.head_motion(150, "nodding", 0, energy, nods_at=anchors, nod_scale=0.0,
                                                     free_scale=0.0))[:, 0]
    # "alternate" (the default): chin down and up in turn on consecutive accents
    alt = np.sign(nods["alternate"][anchors])
    assert (alt[1:] == -alt[:-1]).all()
    # "down": chin down (positive pitch) on every accent, back at rest between accents, with the same heights
    down = nods["down"]
    assert (down[anchors] > 0.05).all() and np.allclose(down[anchors], np.abs(nods["alternate"][anchors]))
    assert all(abs(down[(a + b) // 2]) < 1e-9 for a, b in zip(anchors[:-1], anchors[1:]))
    with pytest.raises(ValueError, match="nod_direction"):
        M.head_motion(150, "nodding", 0, energy, nod_direction="up")
    with pytest.raises(ValueError, match="nod_direction"):
        Phenomena(nod_direction="sideways")


def test_identity_variants_through_the_face_model():
    from sadtalker_lib.data.identities import IdentityDraw, draw_identity, identity_portrait, identity_specs
    from sadtalker_lib.data.render import default_portrait

    base = default_portrait(64)
    specs = identity_specs(["astronaut", "grace_hopper"], 2, seed=0)
    assert [s.name for s in specs] == ["astronaut", "grace_hopper", "astronaut~v1", "grace_hopper~v1",
                                       "astronaut~v2", "grace_hopper~v2"]
    variant = identity_portrait(base, specs[2].draw, specs[2].name)
    moved = np.abs(variant.landmarks - base.landmarks).max()
    assert moved > 1.0 and variant.image.shape == base.image.shape  # px at 64
    assert np.abs(variant.image.astype(float) - base.image).mean() > 1.0
    zero = draw_identity(np.random.default_rng(0), spread=0.0)
    assert not zero.id_coeff.any() and not zero.tex_coeff.any()
    same = identity_portrait(base, IdentityDraw(zero.id_coeff, zero.tex_coeff), "same")
    assert np.abs(same.landmarks - base.landmarks).max() < 1e-3


def test_default_corpus_phenomena_present_and_removed(tiny_corpus, tmp_path):
    from sadtalker_lib.data import build_default_corpus, load_clip, load_index
    from sadtalker_lib.data.corpus import Phenomena
    from sadtalker_lib.data.corpus.splits import identity_split

    index = load_index(tiny_corpus / "a")
    assert len(index["identities"]) == 6 and index["phenomena"] == Phenomena().to_json()
    assert [c["identity"] for c in index["clips"]] == ["astronaut", "grace_hopper"]
    split = identity_split(index)
    assert split.identity_disjoint and not set(split.train_identities) & set(split.heldout_identities)
    blink_dims = [V.EXPRESSION_DIMS[d] for d in V.BLINK_DIMS]
    clips = [load_clip(tiny_corpus / "a", k) for k in range(2)]
    for c in clips:  # audio-irrelevant motion: in the real coefficients, not in the lip-only target
        extra = c["coeffs"][:, :64] - c["exp_lip"] - M.blink_expression(c["blink"])
        assert not extra[0].any() and np.abs(extra).max() > 0.05
    rest = [c["coeffs"][0, :64] for c in clips]
    non_mouth = [d for d in range(64) if d not in blink_dims and d not in (0, 1, 2, 3, 4, 5, 6, 7, 8)]
    assert np.abs(rest[0][non_mouth] - rest[1][non_mouth]).max() > 0.05  # two people, two resting faces
    # every knob at 0
    build_default_corpus(tmp_path / "off", n_clips=2, seed=0, size=64, max_seconds=1.4, progress=False,
                         phenomena=Phenomena.none())
    off_index = load_index(tmp_path / "off")
    assert off_index["identities"] == ["astronaut", "grace_hopper"]
    off = [load_clip(tmp_path / "off", k) for k in range(2)]
    for c in off:
        assert np.allclose(c["coeffs"][:, :64], c["exp_lip"] + M.blink_expression(c["blink"]), atol=1e-6)
        assert np.ptp(c["coeffs"][:, 64:], axis=0).max() < 1e-6  # no head motion at all
    assert np.array_equal(off[0]["coeffs"][0, non_mouth], off[1]["coeffs"][0, non_mouth])  # the same beta_0
    assert np.array_equal(off[0]["audio"], clips[0]["audio"])  # the speech does not depend on the knobs
    # the measurements see the same
    from sadtalker_lib.data.corpus.phenomena import measure_phenomena

    on_m, off_m = measure_phenomena(tiny_corpus / "a"), measure_phenomena(tmp_path / "off")
    assert on_m["n_identities"] == off_m["n_identities"] == 2
    assert on_m["irrelevant_expression_fraction_without_blinks"] > 0.05
    assert off_m["irrelevant_expression_fraction_without_blinks"] < 1e-9
    assert on_m["rest_between_identity_rms_upper_face"] > 0.01 and off_m["rest_between_identity_rms_upper_face"] < 1e-9
