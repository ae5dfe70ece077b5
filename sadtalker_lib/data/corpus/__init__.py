"""Training corpora in one declared format: a default corpus made offline, and one from real videos.

    format.py   the on-disk schema (corpus.json index + one .npz per clip, ``CLIP_KEYS``); the only code that
                reads or writes a corpus folder
    default.py  build_default_corpus: eSpeak NG speech + viseme teacher + motion styles + a rendered portrait
    videos.py   build_video_corpus: a folder of real talking-face videos -> clips, people, identity split
    video_clip.py  one video -> one clip: official crop, landmarks, fitted coefficients, lip-only target
    people.py   a person per clip: dlib face descriptors clustered at 0.6, optional people.csv
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
    Phenomena,
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
from .people import assign_people, clip_distance, cluster_embeddings, read_people_csv
from .videos import MOUTH_DIMS, VIDEO_SUFFIXES, build_video_corpus, find_videos

__all__ = [
    "FORMAT", "FORMAT_VERSION", "INDEX_FILE", "CLIP_KEYS", "FPS", "SAMPLES_PER_FRAME", "is_corpus", "load_index",
    "load_clip", "select_clips", "save_clip", "write_index", "audio_fields",
    "SENTENCES", "DEFAULT_LANGUAGES", "VOICE_VARIANTS", "ClipPlan", "Phenomena", "draw_rest_expression",
    "rest_expression_vector",
    "plan_default_corpus", "build_default_corpus", "MOUTH_DIMS", "VIDEO_SUFFIXES", "build_video_corpus",
    "CorpusDataset", "find_videos", "assign_people", "clip_distance", "cluster_embeddings", "read_people_csv",
]
