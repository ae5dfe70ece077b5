"""Training corpora in one cached format: a default corpus made offline, and one from real videos.

Both builders write a folder::

    out_dir/corpus.json        the index (format, fps, sample rate, size, styles, identities, one entry per clip)
    out_dir/clip_0000.npz      one file per clip (numpy, no pickles):
        frames     uint8   [T, S, S, 3]   25 fps RGB, a square face crop (rendered portrait or video crop)
        audio      float32 [T * 640]      16 kHz mono, cropped to whole video frames (official crop_pad_audio)
        mel        float32 [T, 1, 80, 16] one 0.2 s mel window per frame (sadtalker_lib.audio, official get_data)
        landmarks  float32 [T, 68, 2]     (x, row) pixels of ``frames``
        coeffs     float32 [T, 70]        [exp 64, angle 3 (pitch, yaw, roll), trans 3]: teacher + motion for the
                                          default corpus, fitted with morphable.fit for videos
        exp_lip    float32 [T, 64]        lip-only expression (the distillation target of paper Eq. 3): the
                                          clip's resting expression + the viseme teacher's lips, or the
                                          fitted mouth directions for videos
        blink      float32 [T]            eye closure in [0, 1] (1 = closed)
        phonemes   str     [P]            IPA phonemes (empty for videos) with
        phoneme_ms float32 [P, 2]         their start / end times in ms

``build_default_corpus`` speaks sentences with eSpeak NG (several languages, voices, rates, pitches), turns
the phonemes into lip coefficients (``visemes``), adds head motion in one of the ``motion.MOTION_STYLES`` and
blinks, and renders a real portrait with them (``render``). ``build_video_corpus`` decodes real talking-face
videos (VoxCeleb / HDTF style) at 25 fps with 16 kHz audio, finds dlib landmarks per frame, crops a fixed
square around the face and fits the morphable model to the landmarks. ``CorpusDataset`` reads either into
windows of L frames (5 for ExpNet, 32 for PoseVAE).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import DEFAULT_CONFIG, crop_to_frames, mel_windows, melspectrogram
from .motion import MOTION_STYLES, generate_motion
from .visemes import EXPRESSION_DIMS, FPS, teacher_expression

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SENTENCES", "VOICE_VARIANTS", "MOUTH_DIMS", "ClipPlan", "plan_default_corpus",
    "build_default_corpus", "build_video_corpus", "load_index", "load_clip", "CorpusDataset",
]

FORMAT, FORMAT_VERSION = "sadtalker-lab-corpus", 1
INDEX_FILE = "corpus.json"
SAMPLES_PER_FRAME = DEFAULT_CONFIG.samples_per_frame  # 640 = 16 kHz / 25 fps
CLIP_KEYS = ("frames", "audio", "mel", "landmarks", "coeffs", "exp_lip", "blink", "phonemes", "phoneme_ms")

# A few sentences per language, written for this project: varied vowels, bilabials, labiodentals and rounding.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Bob bought a map of the bay before breakfast.",
        "We will move the boxes when the weather is fine.",
        "Please pass me the paper, the pen and the blue book.",
        "My mother makes apple pie every Sunday morning.",
        "The quick brown fox jumps over the lazy dog.",
        "Five friendly farmers fixed the fence by the field.",
        "Who knew the moon would look so bright tonight?",
        "Open the window and let the warm air in.",
        "I would rather walk than wait for the bus.",
        "She sells sea shells by the sea shore.",
    ),
    "de": (
        "Guten Morgen, wie geht es Ihnen heute?",
        "Papa malt ein buntes Bild vom Meer.",
        "Wir fahren morgen früh mit dem Bus nach Berlin.",
        "Das Wetter ist schön, die Sonne scheint.",
        "Fünf müde Mäuse suchen ihr warmes Haus.",
        "Bitte bring mir Brot, Butter und Milch.",
        "Die Blumen im Garten blühen wunderbar.",
        "Um acht Uhr beginnt die Musik im Park.",
    ),
    "fr": (
        "Bonjour, je m'appelle Pierre et j'habite à Paris.",
        "Maman boit un bon café au lait le matin.",
        "Le petit bateau bleu part vers la mer.",
        "Nous voulons voir le feu d'artifice ce soir.",
        "Il fait beau, allons nous promener au parc.",
        "Un verre de vin blanc pour mon oncle, merci.",
        "La musique du film était vraiment magnifique.",
        "Où as-tu mis mes lunettes et mon parapluie?",
    ),
    "es": (
        "Hola, buenos días, ¿cómo estás hoy?",
        "Mi mamá prepara una paella muy buena.",
        "El perro corre por el parque con la pelota.",
        "Vamos a la playa el próximo verano.",
        "Me gusta mucho beber un café por la mañana.",
        "Pablo pinta montañas blancas y bosques verdes.",
        "La música suena fuerte en la fiesta del pueblo.",
        "¿Puedes abrir la ventana, por favor?",
    ),
    "it": (
        "Buongiorno, come stai oggi?",
        "La mamma prepara la pasta per il pranzo.",
        "Il bambino gioca con la palla nel parco.",
        "Domani andiamo al mare con gli amici.",
        "Vorrei un bicchiere di acqua fresca, per favore.",
        "Mio padre beve il caffè ogni mattina.",
    ),
    "pt": (
        "Bom dia, como você está hoje?",
        "A minha mãe faz um bolo muito bom.",
        "O barco branco navega pelo mar azul.",
        "Vamos passear no parque depois do almoço.",
        "Por favor, abra a porta da frente.",
        "O menino bebe leite com pão pela manhã.",
    ),
    "nl": (
        "Goedemorgen, hoe gaat het met je?",
        "Mijn moeder bakt brood voor het ontbijt.",
        "De boot vaart langzaam over het water.",
        "Wij fietsen morgen naar het mooie park.",
        "Wil je mij de blauwe pen even geven?",
        "Vijf vrolijke vogels zingen in de boom.",
    ),
}
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl")
VOICE_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m7")  # eSpeak NG variants
# the expression directions that move the mouth: the lip-only projection of fitted (real) coefficients
MOUTH_DIMS = tuple(EXPRESSION_DIMS[n] for n in ("jaw_open", "lip_corners_up", "lip_corners_down", "lip_stretch",
                                                "pucker", "upper_lip_raise", "lower_lip_depress", "lips_part",
                                                "mouth_shift"))


# ---------------------------------------------------------------------------------------------
# Writing / reading the cached format
# ---------------------------------------------------------------------------------------------
def _save_clip(path: Path, arrays: dict[str, np.ndarray]) -> None:
    missing = [k for k in CLIP_KEYS if k not in arrays]
    assert not missing, f"clip arrays missing {missing}"
    t = arrays["coeffs"].shape[0]
    for k in ("frames", "mel", "landmarks", "exp_lip", "blink"):
        assert arrays[k].shape[0] == t, f"{k} has {arrays[k].shape[0]} frames, coeffs has {t}"
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **{k: arrays[k] for k in CLIP_KEYS})
    os.replace(tmp, path)


def _write_index(out_dir: Path, index: dict) -> Path:
    path = out_dir / INDEX_FILE
    tmp = out_dir / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    return path


def load_index(root: str | os.PathLike) -> dict:
    """The ``corpus.json`` of a corpus folder (checked to be this format)."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX_FILE} in {root}: build a corpus with build_default_corpus or "
                                "build_video_corpus first")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index (format={index.get('format')!r})")
    if index.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {index['version']}; this code reads up to {FORMAT_VERSION}")
    return index


def load_clip(root: str | os.PathLike, clip: int | str | dict) -> dict[str, np.ndarray]:
    """All arrays of one clip (by position in the index, clip id, or index entry)."""
    root = Path(root)
    if not isinstance(clip, dict):
        clips = load_index(root)["clips"]
        clip = clips[clip] if isinstance(clip, int) else next(c for c in clips if c["id"] == clip)
    with np.load(root / clip["file"], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _audio_features(samples: np.ndarray, max_frames: int | None = None):
    """16 kHz samples -> (wav cropped to whole frames [T * 640], mel windows [T, 1, 80, 16], T)."""
    wav, frames = crop_to_frames(np.asarray(samples, np.float32))
    if max_frames is not None and frames > max_frames:
        frames = int(max_frames)
        wav = wav[: int(frames * SAMPLES_PER_FRAME)]
    if frames == 0:
        raise ValueError(f"audio of {len(samples)} samples is shorter than one video frame "
                         f"({SAMPLES_PER_FRAME:g} samples)")
    windows = mel_windows(melspectrogram(wav), frames)
    return wav.astype(np.float32), windows, frames


# ---------------------------------------------------------------------------------------------
# The default corpus (espeak-ng speech + viseme teacher + motion styles + rendered portrait)
# ---------------------------------------------------------------------------------------------
@dataclass
class ClipPlan:
    """Everything that defines one default-corpus clip (drawn from the seed by ``plan_default_corpus``)."""

    index: int
    language: str
    voice: str
    text: str
    rate_wpm: int
    pitch: int
    style_id: int
    identity_id: int
    articulation: float  # scale of the teacher's lip movements (per-speaker habit)
    motion_seed: int
    # the speaker's resting expression in this clip (smile, frown, brows, squint): expression direction -> value.
    # It is in every frame, and so in beta_0 and in the lip-only target, as the paper's lip-only coefficients
    # (rendered by Wav2Lip from the first frame, Eq. 3) keep the first frame's expression
    rest_expression: dict = field(default_factory=dict)


def draw_rest_expression(rng: np.random.Generator) -> dict[str, float]:
    """A speaker's resting expression: a smile (half of the clips) or a slight frown, raised or lowered brows, a
    squint; values in the DefaultMorphableModel's expression units (1 = a natural extreme)."""
    rest = {}
    if rng.random() < 0.5:
        rest["lip_corners_up"] = rng.uniform(0.2, 0.8)
    elif rng.random() < 0.5:
        rest["lip_corners_down"] = rng.uniform(0.1, 0.5)
    brows = rng.uniform(-0.5, 0.7)
    rest["brows_raise" if brows > 0 else "brows_lower"] = abs(brows)
    rest["squint"] = rng.uniform(0.0, 0.4)
    return {k: float(np.round(v, 3)) for k, v in rest.items()}


def rest_expression_vector(rest: dict[str, float], n_exp: int = 64) -> np.ndarray:
    """``float32 [64]`` expression coefficients of a resting expression dict (``draw_rest_expression``)."""
    vec = np.zeros(n_exp, np.float32)
    for name, value in rest.items():
        vec[EXPRESSION_DIMS[name]] = value
    return vec


def plan_default_corpus(n_clips: int, seed: int = 0, languages: Sequence[str] = DEFAULT_LANGUAGES,
                        n_identities: int = 1, styles: Sequence[int] | None = None,
                        voices: Sequence[str] = VOICE_VARIANTS, rate_range: tuple[int, int] = (140, 210),
                        pitch_range: tuple[int, int] = (30, 70), sentences_per_clip: int = 1,
                        rest_expressions: bool = True) -> list[ClipPlan]:
    """Draw the clip recipes: languages and styles cycle (so a small corpus covers them), the rest is random."""
    unknown = [lang for lang in languages if lang not in SENTENCES]
    if unknown:
        raise ValueError(f"no sentences for languages {unknown}; known: {sorted(SENTENCES)}")
    styles = list(range(len(MOTION_STYLES))) if styles is None else [int(s) for s in styles]
    plans = []
    for i in range(n_clips):
        rng = np.random.default_rng([int(seed), i, 0xC0])
        lang = languages[i % len(languages)]
        picks = rng.choice(len(SENTENCES[lang]), size=min(sentences_per_clip, len(SENTENCES[lang])), replace=False)
        plans.append(ClipPlan(
            index=i, language=lang, voice=lang + voices[int(rng.integers(len(voices)))],
            text=" ".join(SENTENCES[lang][int(k)] for k in picks),
            rate_wpm=int(rng.integers(rate_range[0], rate_range[1] + 1)),
            pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
            style_id=styles[(i + int(seed)) % len(styles)], identity_id=i % n_identities,
            articulation=float(np.round(rng.uniform(0.8, 1.2), 3)), motion_seed=int(rng.integers(2**31)),
            rest_expression=draw_rest_expression(np.random.default_rng([int(seed), i, 0x5E])) if rest_expressions
            else {},
        ))
    return plans


def build_default_corpus(out_dir: str | os.PathLike, n_clips: int = 8, seed: int = 0, size: int = 128,
                         languages: Sequence[str] = DEFAULT_LANGUAGES, portraits: Sequence | None = None,
                         styles: Sequence[int] | None = None, voices: Sequence[str] = VOICE_VARIANTS,
                         rate_range: tuple[int, int] = (140, 210), pitch_range: tuple[int, int] = (30, 70),
                         sentences_per_clip: int = 2, max_seconds: float | None = None,
                         rest_expressions: bool = True, progress: bool = True) -> Path:
    """Generate the default corpus offline into ``out_dir``; returns the path of its ``corpus.json``.

    n_clips: how many clips (the corpus size). seed: everything is a function of it (same seed -> identical
    arrays). size: frame size in px. languages: eSpeak NG language codes with sentences in ``SENTENCES``.
    portraits: images (paths / arrays) to animate, one identity each (default: skimage's astronaut).
    styles: motion style ids to cycle through (default all of ``MOTION_STYLES``). max_seconds: crop clips.
    rest_expressions: give each clip a resting expression (``draw_rest_expression``) under the lip motion, so
    that beta_0 carries what the audio cannot predict (False: a neutral face, lips only).
    Needs eSpeak NG (``apt-get install espeak-ng``).
    """
    from tqdm.auto import tqdm

    from .render import PortraitAnimator, default_portrait, load_portrait
    from .tts import espeak_backend, synthesize

    backend = espeak_backend()  # fails early, with the install hint, when eSpeak NG is missing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if portraits is None:
        portrait_list = [default_portrait(size)]
    else:
        portrait_list = [
            load_portrait(p, size=size, name=Path(p).stem if isinstance(p, (str, Path)) else f"portrait{k}")
            for k, p in enumerate(portraits)]
    animators: dict[int, PortraitAnimator] = {}
    plans = plan_default_corpus(n_clips, seed, languages, len(portrait_list), styles, voices, rate_range,
                                pitch_range, sentences_per_clip, rest_expressions)
    max_frames = None if max_seconds is None else max(1, int(round(max_seconds * FPS)))
    entries = []
    for plan in tqdm(plans, desc="default corpus", disable=not progress):
        speech = synthesize(plan.text, plan.voice, plan.rate_wpm, plan.pitch)
        wav, mel, n = _audio_features(speech.samples, max_frames)
        exp_lip = teacher_expression(speech.phonemes, n, scale=plan.articulation)
        exp_lip = exp_lip + rest_expression_vector(plan.rest_expression, exp_lip.shape[1])
        motion = generate_motion(n, plan.style_id, plan.motion_seed, audio=wav)
        coeffs = np.concatenate([exp_lip + motion.blink_exp, motion.pose], 1).astype(np.float32)
        if plan.identity_id not in animators:
            animators[plan.identity_id] = PortraitAnimator(portrait_list[plan.identity_id])
        frames, landmarks = animators[plan.identity_id].render_sequence(coeffs)
        names = np.array([p[0] for p in speech.phonemes], dtype="<U8")
        times = np.array([[p[1], p[2]] for p in speech.phonemes], np.float32).reshape(-1, 2)
        clip_id = f"clip_{plan.index:04d}"
        _save_clip(out_dir / f"{clip_id}.npz", dict(
            frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
            blink=motion.blink.astype(np.float32), phonemes=names, phoneme_ms=times))
        entries.append(dict(
            id=clip_id, file=f"{clip_id}.npz", n_frames=int(n), duration_s=n / FPS,
            style_id=plan.style_id, style=MOTION_STYLES[plan.style_id].name,
            identity_id=plan.identity_id, identity=portrait_list[plan.identity_id].name,
            language=plan.language, voice=plan.voice, rate_wpm=plan.rate_wpm, pitch=plan.pitch, text=plan.text,
            articulation=plan.articulation, motion_seed=plan.motion_seed, rest_expression=plan.rest_expression,
            coeffs_fitted=True, coeffs_source="viseme-teacher+motion", lip_source="viseme-teacher"))
    index = dict(
        format=FORMAT, version=FORMAT_VERSION, kind="default", fps=FPS, sample_rate=DEFAULT_CONFIG.sample_rate,
        size=int(size),
        seed=int(seed), tts_backend=backend, expression_space="DefaultMorphableModel",
        styles=[s.name for s in MOTION_STYLES], identities=[p.name for p in portrait_list],
        builder=dict(n_clips=n_clips, languages=list(languages), voices=list(voices), rate_range=list(rate_range),
                     pitch_range=list(pitch_range), sentences_per_clip=sentences_per_clip, max_seconds=max_seconds,
                     rest_expressions=rest_expressions),
        clips=entries)
    return _write_index(out_dir, index)


# ---------------------------------------------------------------------------------------------
# The video corpus (real talking faces)
# ---------------------------------------------------------------------------------------------
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _track_landmarks(frames: np.ndarray, detector) -> np.ndarray:
    """dlib landmarks for every frame [T, 68, 2]; frames where no face is found reuse the nearest found one."""
    from ..face.detect import MultipleFacesWarning, NoFaceError

    out: list[np.ndarray | None] = []
    for frame in frames:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MultipleFacesWarning)
                out.append(detector.landmarks(frame))
        except NoFaceError:
            out.append(None)
    found = [i for i, lm in enumerate(out) if lm is not None]
    if not found:
        raise NoFaceError("no face found in any frame")
    for i in range(len(out)):
        if out[i] is None:
            out[i] = out[min(found, key=lambda j: abs(j - i))]
    return np.stack(out).astype(np.float32)


def _fixed_crop(landmarks: np.ndarray, size: int, face_fraction: float = 0.5) -> np.ndarray:
    """One square crop for the whole clip (as ``render.load_portrait`` frames a portrait): affine [2, 3]."""
    lo, hi = landmarks.min(1), landmarks.max(1)  # [T, 2]
    side = float(np.median(np.maximum(hi[:, 0] - lo[:, 0], 0.8 * (hi[:, 1] - lo[:, 1])))) / face_fraction
    cx, cy = np.median((lo + hi) / 2, axis=0)
    cy -= 0.06 * side
    s = size / side
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])


def _blink_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Eye closure [T] in [0, 1] from the eye aspect ratio (supp. Eq. 4-6) relative to the clip's open eyes.

    0 while the ratio stays above 90 % of the clip's open-eye value (its 90th percentile), 1 at 30 % and below.
    """
    from ..morphable.render import eye_aspect_ratio

    ear = eye_aspect_ratio(landmarks.astype(np.float64))
    rel = ear / max(float(np.percentile(ear, 90)), 1e-6)
    return np.clip((0.9 - rel) / 0.6, 0.0, 1.0).astype(np.float32)


def build_video_corpus(video_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int = 128,
                       max_seconds: float | None = None, max_clips: int | None = None, fit_coeffs: bool = True,
                       fit_iterations: int | None = None, identity_of: Callable[[Path], str] | None = None,
                       detector=None, progress: bool = True) -> Path:
    """Cache a folder of real talking-face videos (``*.mp4``, ...) into ``out_dir``; returns its ``corpus.json``.

    Each video: frames at 25 fps and its audio at 16 kHz (imageio-ffmpeg), dlib landmarks per frame, one fixed
    square face crop of ``size`` px, and coefficients fitted to the landmarks (``morphable.fit.fit_video``, one
    identity per clip; ``fit_coeffs=False`` stores zeros and ``coeffs_fitted: false``). ``exp_lip`` is the fitted
    expression restricted to the mouth directions (``MOUTH_DIMS``). Identity labels: ``identity_of(path)``
    (default: the file name); the style id of a clip is its identity id, as the official PoseVAE's 46 style
    classes are its training speakers. Videos without an audio track or a face are skipped with a warning.
    """
    import cv2
    from tqdm.auto import tqdm

    from ..face.detect import DlibDetector, NoFaceError
    from ..video import VideoError, read_video, read_video_audio

    video_dir, out_dir = Path(video_dir), Path(out_dir)
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if video_dir.is_dir() else []
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {video_dir}")
    videos = videos[:max_clips] if max_clips is not None else videos
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = detector or DlibDetector(max_side=320)
    identity_of = identity_of or (lambda p: p.stem)
    identities: list[str] = []
    entries, skipped = [], []
    max_frames = None if max_seconds is None else max(1, int(round(max_seconds * FPS)))
    for path in tqdm(videos, desc="video corpus", disable=not progress):
        try:
            samples = read_video_audio(path)
            wav, mel, n_audio = _audio_features(samples, max_frames)
            frames_full = read_video(path, fps=FPS, max_frames=n_audio)
            n = min(n_audio, len(frames_full))
            wav, mel, frames_full = wav[: int(n * SAMPLES_PER_FRAME)], mel[:n], frames_full[:n]
            lm_full = _track_landmarks(frames_full, detector)
        except (VideoError, NoFaceError, ValueError) as e:
            warnings.warn(f"skipping {path.name}: {e}", stacklevel=2)
            skipped.append(dict(file=path.name, reason=str(e)))
            continue
        m = _fixed_crop(lm_full, size)
        frames = np.stack([cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
                           for f in frames_full])
        landmarks = (lm_full @ m[:, :2].T + m[:, 2]).astype(np.float32)
        coeffs = np.zeros((n, 70), np.float32)
        fit_error = None
        if fit_coeffs:
            from ..morphable.fit import FitConfig, fit_video

            cfg = FitConfig() if fit_iterations is None else FitConfig(
                iterations=fit_iterations, rigid_iterations=max(1, fit_iterations // 5))
            result = fit_video(frames, config=cfg, landmarks=landmarks)
            coeffs = result.coeffs_70.astype(np.float32)
            fit_error = float(result.mean_error_px)
        exp_lip = np.zeros((n, 64), np.float32)
        exp_lip[:, list(MOUTH_DIMS)] = coeffs[:, list(MOUTH_DIMS)]
        name = identity_of(path)
        if name not in identities:
            identities.append(name)
        ident = identities.index(name)
        clip_id = f"clip_{len(entries):04d}"
        _save_clip(out_dir / f"{clip_id}.npz", dict(
            frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
            blink=_blink_from_landmarks(landmarks), phonemes=np.zeros(0, "<U8"),
            phoneme_ms=np.zeros((0, 2), np.float32)))
        entries.append(dict(
            id=clip_id, file=f"{clip_id}.npz", n_frames=int(n), duration_s=n / FPS, source=path.name,
            style_id=ident, style=name, identity_id=ident, identity=name,
            coeffs_fitted=bool(fit_coeffs), coeffs_source="morphable.fit.fit_video" if fit_coeffs else "zeros",
            lip_source="fitted-mouth-dims" if fit_coeffs else "zeros", fit_error_px_224=fit_error))
    if not entries:
        raise ValueError(f"no usable clip in {video_dir}; skipped: {skipped}")
    index = dict(
        format=FORMAT, version=FORMAT_VERSION, kind="video", fps=FPS, sample_rate=DEFAULT_CONFIG.sample_rate,
        size=int(size),
        source_dir=str(video_dir), expression_space="DefaultMorphableModel" if fit_coeffs else None,
        styles=list(identities), identities=list(identities),
        builder=dict(max_seconds=max_seconds, max_clips=max_clips, fit_coeffs=fit_coeffs,
                     fit_iterations=fit_iterations),
        clips=entries, skipped=skipped)
    return _write_index(out_dir, index)


# ---------------------------------------------------------------------------------------------
# Reading windows for training
# ---------------------------------------------------------------------------------------------
class CorpusDataset(Dataset):
    """Windows of ``window`` consecutive frames from a corpus folder (either builder's output).

    Each item is a dict of tensors:
        mel [L, 1, 80, 16], coeffs [L, 70], exp_lip [L, 64], blink [L, 1], landmarks [L, 68, 2],
        ref_coeffs [70] (the clip's first frame: beta_0 / rho_0 of the paper), style_id, identity_id, clip, start
        (long scalars), and frames [L, 3, S, S] float in [0, 1] when ``with_frames``.
    window: 5 for ExpNet, 32 for PoseVAE. stride: step between window starts. clips: ids or positions to use
    (e.g. a train / held-out split); default all. Clips shorter than the window are left out (warning).
    Clip arrays are loaded once and kept in memory.
    """

    def __init__(self, root: str | os.PathLike, window: int = 5, stride: int = 1, clips: Sequence | None = None,
                 with_frames: bool = False):
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        self.root = Path(root)
        self.index = load_index(self.root)
        all_clips = self.index["clips"]
        if clips is None:
            chosen = list(all_clips)
        else:
            by_id = {c["id"]: c for c in all_clips}
            chosen = [all_clips[c] if isinstance(c, (int, np.integer)) else by_id[c] for c in clips]
        short = [c["id"] for c in chosen if c["n_frames"] < window]
        if short:
            warnings.warn(f"clips shorter than the {window}-frame window are left out: {short}", stacklevel=2)
        self.clips = [c for c in chosen if c["n_frames"] >= window]
        if not self.clips:
            raise ValueError(f"no clip in {self.root} has at least {window} frames")
        self.window, self.stride, self.with_frames = int(window), int(stride), bool(with_frames)
        self.items = [(k, s) for k, c in enumerate(self.clips) for s in range(0, c["n_frames"] - window + 1, stride)]
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def clip_arrays(self, k: int) -> dict[str, np.ndarray]:
        """All arrays of the k-th clip of this dataset (cached)."""
        if k not in self._cache:
            self._cache[k] = load_clip(self.root, self.clips[k])
        return self._cache[k]

    def __getitem__(self, i: int) -> dict:
        k, s = self.items[i]
        a = self.clip_arrays(k)
        w = slice(s, s + self.window)
        c = self.clips[k]
        item = {
            "mel": torch.from_numpy(a["mel"][w]),
            "coeffs": torch.from_numpy(a["coeffs"][w]),
            "exp_lip": torch.from_numpy(a["exp_lip"][w]),
            "blink": torch.from_numpy(a["blink"][w][:, None]),
            "landmarks": torch.from_numpy(a["landmarks"][w]),
            "ref_coeffs": torch.from_numpy(a["coeffs"][0]),
            "style_id": torch.tensor(int(c["style_id"])),
            "identity_id": torch.tensor(int(c["identity_id"])),
            "clip": torch.tensor(k),
            "start": torch.tensor(s),
        }
        if self.with_frames:
            item["frames"] = torch.from_numpy(a["frames"][w]).permute(0, 3, 1, 2).float() / 255.0
        return item
