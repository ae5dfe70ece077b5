"""The default corpus, made offline and CONTROLLED: each phenomenon the paper ablates is present by construction.

``build_default_corpus`` speaks sentences with eSpeak NG (several languages, voices, rates, pitches), turns
the phonemes into lip coefficients (``data.visemes``), adds head motion in one of the ``motion.MOTION_STYLES``,
blinks and audio-irrelevant expression motion, and renders real portraits with them (``data.render``). The clips
are written in the corpus format (``format.py``).

The phenomena, each with a strength in :class:`Phenomena` (0 removes it; the index stores the values):

* several identities: the real photos installed packages ship (``identities.REAL_PORTRAITS``: scikit-image's
  astronaut, matplotlib's Grace Hopper) plus face-model variants of them; ``identity_id`` per clip, so
  ``splits.identity_split`` gives identity-disjoint splits;
* a resting expression per identity (smile / frown, brows, squint; plus a smaller per-clip part), in every
  frame of both targets, so beta_0 (the first frame) carries what the audio cannot predict;
* audio-irrelevant expression motion (``motion.expression_drift``: brow / lid / cheek drifts, smile episodes;
  ``motion.pause_breaths``: the jaw opening in the speech's pauses) in the "real" coefficients
  ``coeffs[:, EXP]`` only, not in the lip-only target ``exp_lip`` (Table 3: lip-only vs real coefficients);
* head motion: speech-locked nods that pause on the speech's accents (onset peaks, by default) with a
  per-style amplitude and a random phase, a loudness coupling, and audio-independent motion with random phases
  (``motion.head_motion``; Table 4: audio, style and z).

Per frame: ``exp_lip = teacher lips + rest``; ``coeffs[:, EXP] = exp_lip + drift + blinks``; ``coeffs[:, POSE]``
the head motion; ``drift`` is 0 in the first frame, so beta_0 = coeffs[0, EXP] is the rest (plus that frame's
lips and blink).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ...coeffs import EXP_DIM
from ..identities import REAL_PORTRAITS, identity_specs
from ..motion import MOTION_STYLES, expression_drift, generate_motion, pause_breaths
from ..visemes import EXPRESSION_DIMS, teacher_expression
from .format import FPS, audio_fields, make_index, save_clip, write_index
from .phenomena import Phenomena

__all__ = [
    "SENTENCES", "DEFAULT_LANGUAGES", "VOICE_VARIANTS", "Phenomena", "ClipPlan", "draw_rest_expression",
    "rest_expression_vector", "clip_rest_expression", "plan_default_corpus", "build_default_corpus",
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
# The default corpus (espeak-ng speech + viseme teacher + motion styles + rendered portraits)
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
    """A resting expression: a smile (half of the draws) or a slight frown, raised or lowered brows, a squint;
    values in the DefaultMorphableModel's expression units (1 = a natural extreme)."""
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
        vec[EXPRESSION_DIMS[name]] += value
    return vec


def clip_rest_expression(seed: int, identity_id: int, clip: int, spread: float = 1.0,
                         clip_share: float = 0.25) -> dict[str, float]:
    """The rest of one clip: ``spread`` x (the identity's rest + ``clip_share`` x a per-clip draw), both drawn
    with ``draw_rest_expression`` (the identity's from ``seed`` and ``identity_id``, the clip's from ``clip``)."""
    rest: dict[str, float] = {}
    for key, share in (((int(seed), int(identity_id), 0x1DE57), 1.0), ((int(seed), int(clip), 0x5E), clip_share)):
        for name, value in draw_rest_expression(np.random.default_rng(list(key))).items():
            rest[name] = rest.get(name, 0.0) + spread * share * value
    return {k: float(np.round(v, 3)) for k, v in rest.items() if np.round(v, 3) != 0}


def plan_default_corpus(n_clips: int, seed: int = 0, languages: Sequence[str] = DEFAULT_LANGUAGES,
                        n_identities: int = 1, styles: Sequence[int] | None = None,
                        voices: Sequence[str] = VOICE_VARIANTS, rate_range: tuple[int, int] = (140, 210),
                        pitch_range: tuple[int, int] = (30, 70), sentences_per_clip: int = 1,
                        rest_expressions: bool = True, phenomena: Phenomena | dict | None = None) -> list[ClipPlan]:
    """Draw the clip recipes: languages, styles and identities cycle (so a small corpus covers them), the rest is
    random. Rest expressions follow ``phenomena`` (``rest_spread``, ``rest_clip_share``); ``rest_expressions``
    False: none."""
    unknown = [lang for lang in languages if lang not in SENTENCES]
    if unknown:
        raise ValueError(f"no sentences for languages {unknown}; known: {sorted(SENTENCES)}")
    phen = Phenomena.coerce(phenomena)
    styles = list(range(len(MOTION_STYLES))) if styles is None else [int(s) for s in styles]
    plans = []
    for i in range(n_clips):
        rng = np.random.default_rng([int(seed), i, 0xC0])
        lang = languages[i % len(languages)]
        picks = rng.choice(len(SENTENCES[lang]), size=min(sentences_per_clip, len(SENTENCES[lang])), replace=False)
        identity = i % n_identities
        plans.append(ClipPlan(
            index=i, language=lang, voice=lang + voices[int(rng.integers(len(voices)))],
            text=" ".join(SENTENCES[lang][int(k)] for k in picks),
            rate_wpm=int(rng.integers(rate_range[0], rate_range[1] + 1)),
            pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
            style_id=styles[(i + int(seed)) % len(styles)], identity_id=identity,
            articulation=float(np.round(rng.uniform(0.8, 1.2), 3)), motion_seed=int(rng.integers(2**31)),
            rest_expression=clip_rest_expression(seed, identity, i, phen.rest_spread, phen.rest_clip_share)
            if rest_expressions else {},
        ))
    return plans


def _photo_list(portraits: Sequence | None) -> list[tuple[str, object]]:
    """(name, source) of the photos to animate: ``portraits`` (paths / arrays), or the real photos of
    ``identities.REAL_PORTRAITS`` (source None)."""
    if portraits is None:
        return [(name, None) for name in REAL_PORTRAITS]
    return [(Path(p).stem if isinstance(p, (str, Path)) else f"portrait{k}", p) for k, p in enumerate(portraits)]


def _load_photo(name: str, source, size: int):
    """``render.Portrait`` of one photo of ``_photo_list`` (the astronaut from the per-size cache)."""
    from ..identities import real_portrait_image
    from ..render import default_portrait, load_portrait

    if source is None and name == "astronaut":
        return default_portrait(size)
    return load_portrait(real_portrait_image(name) if source is None else source, size=size, name=name)


#: Bumped whenever the builder's output changes for the same arguments (caches compare it: notebook.py).
#: 3: the breaths in the pauses (``Phenomena.pause_breaths``) on by default.
DEFAULT_CORPUS_VERSION = 3


def build_default_corpus(out_dir: str | os.PathLike, n_clips: int = 8, seed: int = 0, size: int = 128,
                         languages: Sequence[str] = DEFAULT_LANGUAGES, portraits: Sequence | None = None,
                         styles: Sequence[int] | None = None, voices: Sequence[str] = VOICE_VARIANTS,
                         rate_range: tuple[int, int] = (140, 210), pitch_range: tuple[int, int] = (30, 70),
                         sentences_per_clip: int = 2, max_seconds: float | None = None,
                         rest_expressions: bool = True, progress: bool = True,
                         phenomena: Phenomena | dict | None = None) -> Path:
    """Generate the default corpus offline into ``out_dir``; returns the path of its ``corpus.json``.

    n_clips: how many clips (the corpus size). seed: everything is a function of it (same seed -> identical
    arrays). size: frame size in px. languages: eSpeak NG language codes with sentences in ``SENTENCES``.
    portraits: photos (paths / arrays) to animate (default: the real photos of ``identities.REAL_PORTRAITS``);
    with ``phenomena.identity_variants`` face-model variants of each; clip k shows identity k mod (number of
    identities). styles: motion style ids to cycle through (default all of ``MOTION_STYLES``). max_seconds: crop
    clips. rest_expressions: False = a neutral rest face (as ``phenomena.rest_spread`` 0). phenomena:
    :class:`Phenomena` (or a dict of some of its fields): the strength of each phenomenon.
    Needs eSpeak NG (``apt-get install espeak-ng``).
    """
    from tqdm.auto import tqdm

    from ..identities import identity_portrait
    from ..render import PortraitAnimator
    from ..tts import espeak_backend, synthesize

    phen = Phenomena.coerce(phenomena)
    if not rest_expressions:
        phen = replace(phen, rest_spread=0.0)
    backend = espeak_backend()  # fails early, with the install hint, when eSpeak NG is missing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = _photo_list(portraits)
    specs = identity_specs([name for name, _ in photos], phen.identity_variants, phen.identity_spread, seed)
    plans = plan_default_corpus(n_clips, seed, languages, len(specs), styles, voices, rate_range, pitch_range,
                                sentences_per_clip, phenomena=phen)
    loaded: dict[int, object] = {}
    animators: dict[int, PortraitAnimator] = {}

    def animator(identity: int) -> PortraitAnimator:  # photos and variants are made when first needed
        if identity not in animators:
            spec = specs[identity]
            if spec.photo not in loaded:
                loaded[spec.photo] = _load_photo(*photos[spec.photo], size)
            base = loaded[spec.photo]
            animators[identity] = PortraitAnimator(base if spec.draw is None else
                                                   identity_portrait(base, spec.draw, spec.name))
        return animators[identity]

    max_frames = None if max_seconds is None else max(1, int(round(max_seconds * FPS)))
    entries = []
    for plan in tqdm(plans, desc="default corpus", disable=not progress):
        speech = synthesize(plan.text, plan.voice, plan.rate_wpm, plan.pitch)
        wav, mel, n = audio_fields(speech.samples, max_frames)
        exp_lip = teacher_expression(speech.phonemes, n, scale=plan.articulation)
        exp_lip = exp_lip + rest_expression_vector(plan.rest_expression, exp_lip.shape[1])
        motion = generate_motion(n, plan.style_id, plan.motion_seed, audio=wav,
                                 phonemes=speech.phonemes, nod_source=phen.nod_source,
                                 nod_scale=phen.speech_nods, energy_scale=phen.energy_coupling,
                                 free_scale=phen.free_motion, nod_direction=phen.nod_direction)
        drift = expression_drift(n, plan.motion_seed, drift=phen.expression_drift, smiles=phen.smiles)
        drift = drift + pause_breaths(speech.phonemes, n, plan.motion_seed, scale=phen.pause_breaths)
        coeffs = np.concatenate([exp_lip + drift + motion.blink_exp, motion.pose], 1).astype(np.float32)
        frames, landmarks = animator(plan.identity_id).render_sequence(coeffs)
        names = np.array([p[0] for p in speech.phonemes], dtype="<U8")
        times = np.array([[p[1], p[2]] for p in speech.phonemes], np.float32).reshape(-1, 2)
        clip_id = f"clip_{plan.index:04d}"
        file = save_clip(out_dir, clip_id, dict(
            frames=frames, audio=wav, mel=mel, landmarks=landmarks, coeffs=coeffs, exp_lip=exp_lip,
            blink=motion.blink.astype(np.float32), phonemes=names, phoneme_ms=times))
        spec = specs[plan.identity_id]
        entries.append(dict(
            id=clip_id, file=file, n_frames=int(n), duration_s=n / FPS,
            style_id=plan.style_id, style=MOTION_STYLES[plan.style_id].name,
            identity_id=plan.identity_id, identity=spec.name, identity_photo=photos[spec.photo][0],
            identity_variant=spec.variant,
            language=plan.language, voice=plan.voice, rate_wpm=plan.rate_wpm, pitch=plan.pitch, text=plan.text,
            articulation=plan.articulation, motion_seed=plan.motion_seed, rest_expression=plan.rest_expression,
            nod_frames=[int(i) for i in motion.nod_frames if i < n],
            coeffs_fitted=True, coeffs_source="viseme-teacher+rest+expression-drift+"
                                              f"{'pause-breaths+' if phen.pause_breaths else ''}blinks+motion",
            lip_source="viseme-teacher+rest"))
    index = make_index(
        "default", size,
        builder_version=DEFAULT_CORPUS_VERSION, seed=int(seed), tts_backend=backend,
        expression_space="DefaultMorphableModel",
        styles=[s.name for s in MOTION_STYLES], identities=[s.name for s in specs],
        identity_info=[dict(s.describe(), photo=photos[s.photo][0]) for s in specs],
        phenomena=phen.to_json(),
        builder=dict(n_clips=n_clips, languages=list(languages), voices=list(voices), rate_range=list(rate_range),
                     pitch_range=list(pitch_range), sentences_per_clip=sentences_per_clip, max_seconds=max_seconds,
                     rest_expressions=rest_expressions),
        clips=entries)
    return write_index(out_dir, index)
