"""The corpus format round trip (``data.corpus.format``) and the helpers the notebooks import (``notebook.py``)."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from sadtalker_lib.coeffs import EXP_DIM, MOTION_DIM  # noqa: E402
from sadtalker_lib.data.corpus import CorpusDataset, format as corpus_format  # noqa: E402
from sadtalker_lib.notebook import cached_default_corpus, clip_dicts, plot_loss_curve, running_mean  # noqa: E402


def _clip(t: int, rng: np.random.Generator, size: int = 8) -> dict[str, np.ndarray]:
    return dict(
        frames=rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8),
        audio=rng.standard_normal(int(t * corpus_format.SAMPLES_PER_FRAME)).astype(np.float32),
        mel=rng.standard_normal((t, 1, 80, 16)).astype(np.float32),
        landmarks=rng.uniform(0, size, (t, 68, 2)).astype(np.float32),
        coeffs=rng.standard_normal((t, MOTION_DIM)).astype(np.float32),
        exp_lip=rng.standard_normal((t, EXP_DIM)).astype(np.float32),
        blink=rng.uniform(0, 1, t).astype(np.float32),
        phonemes=np.array(["a", "b"], dtype="<U8"), phoneme_ms=np.array([[0, 40], [40, 80]], np.float32))


def _write_corpus(root, lengths=(6, 9)):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    entries, arrays = [], []
    for k, t in enumerate(lengths):
        a = _clip(t, rng)
        file = corpus_format.save_clip(root, f"clip_{k:04d}", a)
        entries.append(dict(id=f"clip_{k:04d}", file=file, n_frames=t, style_id=k, identity_id=0))
        arrays.append(a)
    corpus_format.write_index(root, corpus_format.make_index("test", 8, clips=entries))
    return arrays


def test_format_round_trip_and_checks(tmp_path):
    arrays = _write_corpus(tmp_path / "c")
    assert corpus_format.is_corpus(tmp_path / "c") and not corpus_format.is_corpus(tmp_path)
    index = corpus_format.load_index(tmp_path / "c")
    assert index["format"] == corpus_format.FORMAT and index["fps"] == 25 and len(index["clips"]) == 2
    for key in (1, "clip_0001", index["clips"][1]):  # by position, id or entry
        back = corpus_format.load_clip(tmp_path / "c", key)
        assert sorted(back) == sorted(corpus_format.CLIP_KEYS)
        assert all(np.array_equal(back[k], arrays[1][k]) for k in corpus_format.CLIP_KEYS)
    bad = _clip(4, np.random.default_rng(1))
    bad["blink"] = bad["blink"][:3]
    with pytest.raises(AssertionError, match="blink has 3 frames"):
        corpus_format.save_clip(tmp_path / "c", "clip_bad", bad)
    del bad["audio"]
    with pytest.raises(AssertionError, match="missing"):
        corpus_format.save_clip(tmp_path / "c", "clip_bad", bad)
    index["version"] = corpus_format.FORMAT_VERSION + 1
    (tmp_path / "c" / corpus_format.INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="format version"):
        corpus_format.load_index(tmp_path / "c")


def test_dataset_windows_and_clip_dicts(tmp_path):
    arrays = _write_corpus(tmp_path / "c")
    ds = CorpusDataset(tmp_path / "c", window=5, stride=2, clips=["clip_0001"])
    assert len(ds) == 3  # starts 0, 2, 4 of 9 frames
    item = ds[1]
    assert np.array_equal(item["coeffs"].numpy(), arrays[1]["coeffs"][2:7]) and int(item["style_id"]) == 1
    dicts = clip_dicts(tmp_path / "c", [1, "clip_0000"])  # by position or id
    assert [d["style_id"] for d in dicts] == [1, 0] and np.array_equal(dicts[1]["mel"], arrays[0]["mel"])


def test_cached_default_corpus_reuses_an_existing_folder(tmp_path):
    _write_corpus(tmp_path / "c")
    stamp = (tmp_path / "c" / corpus_format.INDEX_FILE).stat().st_mtime_ns
    # a built corpus is reused as it is (no eSpeak NG needed): n_clips / seed only name the default folder
    assert cached_default_corpus(tmp_path / "c", n_clips=99, seed=5) == tmp_path / "c"
    assert (tmp_path / "c" / corpus_format.INDEX_FILE).stat().st_mtime_ns == stamp


def test_cached_default_corpus_is_stale_when_built_with_other_phenomena(tmp_path):
    from sadtalker_lib.data.corpus import Phenomena
    from sadtalker_lib.data.corpus.default import DEFAULT_CORPUS_VERSION
    from sadtalker_lib.notebook import _stale_default_corpus

    _write_corpus(tmp_path / "c")
    index = corpus_format.load_index(tmp_path / "c")
    stored = Phenomena(speech_nods=2.0).to_json()
    del stored["nod_direction"]  # an index written before that field existed: read as its default
    index.update(kind="default", builder_version=DEFAULT_CORPUS_VERSION, seed=0, phenomena=stored)
    corpus_format.write_index(tmp_path / "c", index)
    n = len(index["clips"])
    assert not _stale_default_corpus(tmp_path / "c", n, 0, dict(size=8, phenomena={"speech_nods": 2.0}))
    assert not _stale_default_corpus(tmp_path / "c", n, 0, dict(phenomena=Phenomena(speech_nods=2.0)))
    for other in (dict(), dict(phenomena={"speech_nods": 2.0, "nod_direction": "down"}), dict(size=16,
                  phenomena={"speech_nods": 2.0}), dict(phenomena={"speech_nods": 1.0})):
        assert _stale_default_corpus(tmp_path / "c", n, 0, other), other
    assert _stale_default_corpus(tmp_path / "c", n, 1, dict(phenomena={"speech_nods": 2.0}))


class _History:
    def __init__(self, rows):
        self.rows = rows

    def series(self, key, split="train"):
        pts = [(r["step"], r[key]) for r in self.rows if r["split"] == split and key in r]
        return tuple(np.asarray(x, float) for x in zip(*pts)) if pts else (np.zeros(0), np.zeros(0))


def test_loss_curve_plot_and_running_mean():
    import matplotlib.pyplot as plt

    assert np.allclose(running_mean([1, 2, 3, 4], 2), [1.5, 2.5, 3.5]) and running_mean([1, 2], 3).size == 0
    rows = [dict(step=s, split="train", loss=10.0 - s) for s in range(1, 21)]
    rows += [dict(step=s, split="heldout", loss=9.0 - s) for s in (10, 20)]
    fig, ax = plt.subplots()
    plot_loss_curve(_History(rows), "loss", ax, smooth=5, title="L")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"loss: train (per step)", "loss: train (5-step mean)", "loss: heldout"}
    assert np.allclose(lines["loss: train (5-step mean)"].get_xdata(), np.arange(5, 21))
    assert np.allclose(lines["loss: train (5-step mean)"].get_ydata(), 10.0 - np.arange(3, 19))
    assert np.allclose(lines["loss: heldout"].get_ydata(), [-1.0, -11.0]) and ax.get_title() == "L"
    fig2, ax2 = plt.subplots()
    plot_loss_curve(_History(rows), "loss", ax2, splits=("heldout",), label="run A")
    assert [ln.get_label() for ln in ax2.get_lines()] == ["run A"]
    plt.close(fig), plt.close(fig2)
