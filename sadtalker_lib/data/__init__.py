"""Training data: corpus builders (a default corpus made offline, real talking-face videos) and datasets.

    tts.py       eSpeak NG speech with phoneme timings (ctypes on libespeak-ng, CLI fallback)
    visemes.py   the viseme teacher: phonemes -> lip-only expression coefficients (stand-in for paper Eq. 3)
    motion.py    head motion in distinct styles, coupled to speech energy; eye blinks
    render.py    a real portrait animated by coefficients (piecewise-affine warp, no neural network)
    corpus/      the corpus format (format.py, the only reader / writer), build_default_corpus, build_video_corpus,
                 CorpusDataset (windows)
    frames.py    FaceRender's clips of frames + coefficients and their (source, driving) pairs
    augment.py   face-vid2vid's augmentation of those pairs (flip with mirrored labels, time flip, colour jitter)
"""
from .corpus import CorpusDataset, build_default_corpus, build_video_corpus, load_clip, load_index
from .motion import MOTION_STYLES, STYLE_IDS, generate_motion
from .tts import Speech, TTSError, synthesize
from .visemes import EXPRESSION_DIMS, teacher_expression

__all__ = [
    "CorpusDataset", "build_default_corpus", "build_video_corpus", "load_clip", "load_index",
    "MOTION_STYLES", "STYLE_IDS", "generate_motion", "Speech", "TTSError", "synthesize",
    "EXPRESSION_DIMS", "teacher_expression",
]
