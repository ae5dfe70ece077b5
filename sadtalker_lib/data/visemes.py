"""The viseme "teacher": phonemes with times -> lip-only expression coefficients at 25 fps.

SadTalker distils ExpNet from lip-only coefficients: Wav2Lip makes a lip-synced video of the first frame and
the 3D face regressor reads its expression (paper Eq. 3). Neither is available offline, so the default corpus
uses this hand-written stand-in: each phoneme (IPA, from eSpeak NG) has a mouth-shape target in five lip
parameters, and a dominance-function blend (Cohen & Massaro's coarticulation model) mixes neighbouring targets
so that, e.g., the lips round early before /u/ and close firmly for /p b m/ whatever surrounds them.

Lip parameters (``LIP_PARAMS``), the teacher's articulatory units (1 = a large but natural movement):
    jaw_open     0 closed .. 1 wide open ("a")
    lip_corners  + spread / wide ("i"), - narrowed
    pucker       0 .. 1 rounded and protruded lips ("u", "w")
    upper_lip    + raised, - pressed down
    lower_lip    + dropped, - raised or tucked under the upper teeth ("f", "v")

They are written into the designed directions of the project's 64-d expression space, that of
``DefaultMorphableModel`` (``sadtalker_lib/morphable/default.py``: jaw_open, lip_stretch, pucker,
upper_lip_raise, lower_lip_depress, ...) with the gains of ``LIP_TO_EXPRESSION``; every other entry stays zero,
so the teacher's output is "lip-only", as in the paper.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from ..audio import DEFAULT_CONFIG
from ..coeffs import EXP_DIM
from ..morphable.default import EXPRESSION_NAMES

__all__ = [
    "EXPRESSION_DIMS", "LIP_PARAMS", "LIP_TO_EXPRESSION", "BLINK_DIMS", "FPS", "Viseme", "viseme",
    "is_vowel", "split_phoneme", "lip_params", "params_to_expression", "teacher_expression",
]

FPS = DEFAULT_CONFIG.fps  # 25: the official frame rate

# Index of each named direction of the 64-d expression space: the DefaultMorphableModel's designed ones.
EXPRESSION_DIMS: dict[str, int] = {name: i for i, name in enumerate(EXPRESSION_NAMES)}
LIP_PARAMS = ("jaw_open", "lip_corners", "pucker", "upper_lip", "lower_lip")
# teacher parameter -> (expression direction, gain). Gains put the teacher's "1" at a natural extreme of the
# DefaultMorphableModel: jaw_open 1 opens the inner lips ~0.6 cm, so "a" (param 1) gets 2.5 (~1.5 cm);
# lip_stretch 1 moves each corner ~0.6 cm; pucker 1 narrows each corner ~0.4 cm (x1.5 for a full "u");
# upper_lip_raise / lower_lip_depress 1 move a lip ~0.2-0.4 cm.
LIP_TO_EXPRESSION: dict[str, tuple[str, float]] = {
    "jaw_open": ("jaw_open", 2.5),
    "lip_corners": ("lip_stretch", 1.0),
    "pucker": ("pucker", 1.5),
    "upper_lip": ("upper_lip_raise", 1.0),
    "lower_lip": ("lower_lip_depress", 1.5),
}
BLINK_DIMS = ("blink_right", "blink_left")  # 1 = that eye closed (subject's right = landmarks 36-41)


@dataclass(frozen=True)
class Viseme:
    """Mouth target of one phoneme class and how strongly it imposes itself on its neighbours.

    target: the five ``LIP_PARAMS``. dominance: weight inside the phoneme (higher wins the blend).
    reach_ms: how far the dominance reaches beyond the phoneme (width of its Gaussian fall-off).
    """

    name: str
    target: tuple[float, float, float, float, float]
    dominance: float = 1.0
    reach_ms: float = 60.0


# ---- the viseme table (targets: jaw_open, lip_corners, pucker, upper_lip, lower_lip) ----
REST = Viseme("rest", (0.0, 0.0, 0.0, 0.0, 0.0), 0.6, 50.0)
_VOWELS: dict[str, Viseme] = {}
_CONSONANTS: dict[str, Viseme] = {}


def _add(table: dict, symbols: str, v: Viseme) -> None:
    for s in symbols:
        table[s] = v


# vowels: openness sets the jaw, frontness/rounding set corners and pucker
_add(_VOWELS, "aäæɐɑɒ", Viseme("open", (1.0, 0.25, 0.0, 0.15, 0.25), 1.0, 70.0))
_add(_VOWELS, "ɛɜʌɞ", Viseme("open-mid", (0.7, 0.3, 0.0, 0.1, 0.15), 1.0, 70.0))
_add(_VOWELS, "eəɘɚɤ", Viseme("mid", (0.5, 0.35, 0.0, 0.05, 0.1), 0.9, 70.0))
_add(_VOWELS, "iɪɨɯ", Viseme("close-spread", (0.22, 0.8, 0.0, 0.1, 0.0), 1.0, 70.0))
_add(_VOWELS, "yʏʉ", Viseme("close-rounded-front", (0.2, -0.4, 0.75, 0.05, 0.0), 1.1, 80.0))
_add(_VOWELS, "øœɵ", Viseme("mid-rounded-front", (0.45, -0.3, 0.6, 0.05, 0.05), 1.1, 80.0))
_add(_VOWELS, "oɔ", Viseme("mid-rounded-back", (0.6, -0.4, 0.65, 0.0, 0.1), 1.1, 80.0))
_add(_VOWELS, "uʊ", Viseme("close-rounded-back", (0.22, -0.6, 0.95, 0.0, 0.0), 1.2, 80.0))

# consonants by place of articulation (what the lips and jaw show)
_add(_CONSONANTS, "pbmʙɓ", Viseme("bilabial", (0.0, 0.0, 0.1, -0.3, -0.4), 5.0, 40.0))
_add(_CONSONANTS, "ɸβ", Viseme("bilabial-fricative", (0.06, 0.0, 0.15, -0.2, -0.3), 2.5, 35.0))
_add(_CONSONANTS, "fvɱʋ", Viseme("labiodental", (0.12, 0.0, 0.0, 0.15, -0.7), 3.0, 40.0))
_add(_CONSONANTS, "θð", Viseme("dental", (0.2, 0.15, 0.0, 0.1, 0.15), 1.2, 45.0))
_add(_CONSONANTS, "tdnlɾrɬɮszɹ", Viseme("alveolar", (0.16, 0.2, 0.0, 0.0, 0.0), 0.7, 45.0))
_add(_CONSONANTS, "ʃʒɕʑʂʐ", Viseme("postalveolar", (0.16, -0.35, 0.6, 0.3, 0.2), 1.8, 55.0))
_add(_CONSONANTS, "jçʝɲʎcɟ", Viseme("palatal", (0.15, 0.45, 0.0, 0.0, 0.0), 0.8, 45.0))
_add(_CONSONANTS, "kgɡŋxɣɰ", Viseme("velar", (0.3, 0.1, 0.0, 0.0, 0.0), 0.5, 45.0))
_add(_CONSONANTS, "ʁʀχqɢɴ", Viseme("uvular", (0.3, 0.0, 0.1, 0.0, 0.0), 0.5, 45.0))
_add(_CONSONANTS, "wɥʍ", Viseme("labial-velar", (0.12, -0.5, 0.85, 0.0, 0.0), 2.0, 60.0))
_add(_CONSONANTS, "hɦʔ", Viseme("glottal", (0.3, 0.1, 0.0, 0.0, 0.0), 0.15, 40.0))
_CONSONANTS["ɻ"] = Viseme("retroflex-approximant", (0.2, -0.2, 0.4, 0.1, 0.0), 1.2, 55.0)
UNKNOWN = Viseme("unknown", (0.2, 0.1, 0.0, 0.0, 0.0), 0.5, 45.0)

_SKIP = set("ˈˌːˑ'-_|.;,̃ʰʲʷ˞")  # stress, length, eSpeak separators and secondary articulations


def _base_symbols(phoneme: str) -> list[str]:
    """IPA phoneme name -> its base symbols (diacritics, stress and length marks removed): "aʊ" -> [a, ʊ]."""
    out = []
    for ch in unicodedata.normalize("NFD", phoneme):
        if ch in _SKIP or unicodedata.combining(ch) or ch.isspace():
            continue
        out.append(ch)
    return out


def is_vowel(phoneme: str) -> bool:
    """True when the phoneme's first base symbol is a vowel (monophthong or diphthong)."""
    sym = _base_symbols(phoneme)
    return bool(sym) and sym[0] in _VOWELS


def viseme(symbol: str) -> Viseme:
    """The viseme of one base symbol (``REST`` for pauses, ``UNKNOWN`` for symbols not in the table)."""
    if symbol in ("", "_"):
        return REST
    return _VOWELS.get(symbol) or _CONSONANTS.get(symbol) or UNKNOWN


def split_phoneme(phoneme: str, start_ms: float, end_ms: float) -> list[tuple[Viseme, float, float]]:
    """One phoneme -> visemes with sub-intervals: diphthongs glide (60 % / 40 %), affricates release (30 / 70)."""
    sym = [s for s in _base_symbols(phoneme) if s not in "ʲ"]
    if not sym:
        return [(REST, start_ms, end_ms)]
    vis = [viseme(s) for s in sym]
    if len(vis) == 1:
        return [(vis[0], start_ms, end_ms)]
    first = 0.6 if sym[0] in _VOWELS else 0.3  # "aɪ" lingers on a; "tʃ" is mostly ʃ
    edges = [start_ms, start_ms + first * (end_ms - start_ms)]
    rest = len(vis) - 1
    edges += [edges[1] + (k + 1) * (end_ms - edges[1]) / rest for k in range(rest)]
    return [(v, edges[k], edges[k + 1]) for k, v in enumerate(vis)]


def lip_params(phonemes, n_frames: int, fps: float = FPS, scale: float = 1.0, step_ms: float = 5.0) -> np.ndarray:
    """Teacher lip parameters ``float32 [T, 5]`` (``LIP_PARAMS`` order) for phonemes [(name, start_ms, end_ms)].

    Coarticulation (Cohen & Massaro 1993): every viseme k has a dominance D_k(t) = d_k inside its interval and
    d_k exp(-(gap / reach_k)^2) outside, gap being the distance in ms to the interval; the mouth is the
    dominance-weighted mean of the targets, sum_k D_k target_k / sum_k D_k, plus a rest target of small constant
    dominance. It is evaluated every ``step_ms`` and box-averaged over each 1/fps frame. ``scale`` multiplies the
    articulation (a per-speaker "how much they move their mouth").
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    segments = [seg for name, s, e in phonemes for seg in split_phoneme(name, float(s), float(e)) if e > s]
    frame_ms = 1000.0 / fps
    t = np.arange(0.0, n_frames * frame_ms, step_ms) + step_ms / 2  # [S] fine time grid
    num = np.zeros((t.size, len(LIP_PARAMS)))
    den = np.full(t.size, 0.05)  # the rest target's background dominance (silence when nothing is said)
    for v, s, e in segments:
        gap = np.maximum(np.maximum(s - t, t - e), 0.0)
        d = v.dominance * np.exp(-((gap / v.reach_ms) ** 2))
        num += d[:, None] * np.asarray(v.target)[None]
        den += d
    fine = num / den[:, None]
    frame_of = np.minimum((t // frame_ms).astype(int), n_frames - 1)
    counts = np.bincount(frame_of, minlength=n_frames)[:, None]
    out = np.stack([np.bincount(frame_of, fine[:, j], minlength=n_frames) for j in range(fine.shape[1])], 1)
    return (scale * out / np.maximum(counts, 1)).astype(np.float32)


def params_to_expression(params: np.ndarray, n_exp: int = EXP_DIM) -> np.ndarray:
    """Lip parameters [..., 5] -> lip-only expression coefficients ``float32 [..., 64]`` (other entries zero)."""
    params = np.asarray(params, np.float32)
    exp = np.zeros(params.shape[:-1] + (n_exp,), np.float32)
    for j, name in enumerate(LIP_PARAMS):
        direction, gain = LIP_TO_EXPRESSION[name]
        exp[..., EXPRESSION_DIMS[direction]] += gain * params[..., j]
    return exp


def teacher_expression(phonemes, n_frames: int, fps: float = FPS, scale: float = 1.0) -> np.ndarray:
    """The teacher's lip-only expression coefficients ``float32 [T, 64]`` for phonemes [(name, start_ms, end_ms)]."""
    return params_to_expression(lip_params(phonemes, n_frames, fps=fps, scale=scale))
