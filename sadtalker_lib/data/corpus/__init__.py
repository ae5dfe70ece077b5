"""Training corpora in one declared format: a default corpus made offline, and one from real videos.

    format.py   the on-disk schema (corpus.json index + one .npz per clip, ``CLIP_KEYS``); the only code that
                reads or writes a corpus folder
    default.py  build_default_corpus: eSpeak NG speech + viseme teacher + motion styles + a rendered portrait
    videos.py   build_video_corpus: real talking-face videos, landmarks, a fixed face crop, fitted coefficients
    dataset.py  CorpusDataset: windows of L frames of either (5 for ExpNet, 32 for PoseVAE)

A new corpus source is one file beside ``default.py`` that writes clips with ``format.save_clip`` and the index
with ``format.make_index`` / ``format.write_index``.
"""
from .dataset import CorpusDataset
from .default import (
    DEFAULT_LANGUAGES,
    SENTENCES,
    VOICE_VARIANTS,
    ClipPlan,
    build_default_corpus,
    draw_rest_expression,
    plan_default_corpus,
    rest_expression_vector,
)
from .format import (
    CLIP_KEYS,
    FORMAT,
    FORMAT_VERSION,
    FPS,
    INDEX_FILE,
    SAMPLES_PER_FRAME,
    audio_fields,
    is_corpus,
    load_clip,
    load_index,
    save_clip,
    select_clips,
    write_index,
)
from .videos import MOUTH_DIMS, VIDEO_SUFFIXES, build_video_corpus

__all__ = [
    "FORMAT", "FORMAT_VERSION", "INDEX_FILE", "CLIP_KEYS", "FPS", "SAMPLES_PER_FRAME", "is_corpus", "load_index",
    "load_clip", "select_clips", "save_clip", "write_index", "audio_fields",
    "SENTENCES", "DEFAULT_LANGUAGES", "VOICE_VARIANTS", "ClipPlan", "draw_rest_expression", "rest_expression_vector",
    "plan_default_corpus", "build_default_corpus", "MOUTH_DIMS", "VIDEO_SUFFIXES", "build_video_corpus",
    "CorpusDataset",
]
