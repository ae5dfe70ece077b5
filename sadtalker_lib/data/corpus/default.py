"""The default corpus, made offline: eSpeak NG speech, the viseme teacher, head motion styles, a rendered portrait.

``build_default_corpus`` speaks sentences with eSpeak NG (several languages, voices, rates, pitches), turns
the phonemes into lip coefficients (``data.visemes``), adds head motion in one of the ``motion.MOTION_STYLES``
and blinks, and renders a real portrait with them (``data.render``). The clips are written in the corpus
format (``format.py``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...coeffs import EXP_DIM
from ..motion import MOTION_STYLES, generate_motion
from ..visemes import EXPRESSION_DIMS, teacher_expression
from .format import FPS, audio_fields, make_index, save_clip, write_index

__all__ = [
    "SENTENCES", "DEFAULT_LANGUAGES", "VOICE_VARIANTS", "ClipPlan", "draw_rest_expression",
    "rest_expression_vector", "plan_default_corpus", "build_default_corpus",
]

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


def rest_expression_vector(rest: dict[str, float], n_exp: int = EXP_DIM) -> np.ndarray:
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

    from ..render import PortraitAnimator, default_portrait, load_portrait
    from ..tts import espeak_backend, synthesize

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
        wav, mel, n = audio_fields(speech.samples, max_frames)
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
        file = save_clip(out_dir, clip_id, dict(
            frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
            blink=motion.blink.astype(np.float32), phonemes=names, phoneme_ms=times))
        entries.append(dict(
            id=clip_id, file=file, n_frames=int(n), duration_s=n / FPS,
            style_id=plan.style_id, style=MOTION_STYLES[plan.style_id].name,
            identity_id=plan.identity_id, identity=portrait_list[plan.identity_id].name,
            language=plan.language, voice=plan.voice, rate_wpm=plan.rate_wpm, pitch=plan.pitch, text=plan.text,
            articulation=plan.articulation, motion_seed=plan.motion_seed, rest_expression=plan.rest_expression,
            coeffs_fitted=True, coeffs_source="viseme-teacher+motion", lip_source="viseme-teacher"))
    index = make_index(
        "default", size,
        seed=int(seed), tts_backend=backend, expression_space="DefaultMorphableModel",
        styles=[s.name for s in MOTION_STYLES], identities=[p.name for p in portrait_list],
        builder=dict(n_clips=n_clips, languages=list(languages), voices=list(voices), rate_range=list(rate_range),
                     pitch_range=list(pitch_range), sentences_per_clip=sentences_per_clip, max_seconds=max_seconds,
                     rest_expressions=rest_expressions),
        clips=entries)
    return write_index(out_dir, index)
