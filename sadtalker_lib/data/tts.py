"""Offline speech synthesis with eSpeak NG, with the time of every phoneme.

The default corpus (``corpus.build_default_corpus``) needs real speech *and* where each phoneme sits in it,
so that the viseme teacher (``visemes.py``) can open the jaw on vowels and close the lips on /p b m/.
eSpeak NG reports both: its C library ``libespeak-ng.so.1`` calls back with audio buffers and, when
initialised with ``espeakINITIALIZE_PHONEME_EVENTS``, with one event per phoneme carrying the phoneme name
and its position in the audio (ms). We ask for IPA names (``espeakINITIALIZE_PHONEME_IPA``) so that one
phoneme table serves every language.

Only when the C library cannot be loaded do we fall back to the ``espeak-ng`` command line: it gives the
audio (``-w``) and the IPA string (``--ipa``) but no timings, so phonemes are then spread over the voiced
part of the audio by a simple duration model (see :func:`_spread_phonemes`).

Install on Debian/Ubuntu: ``apt-get install espeak-ng`` (the library comes with it as libespeak-ng1).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Speech", "TTSError", "synthesize", "SAMPLE_RATE", "SILENCE", "espeak_backend"]

# = sadtalker_lib.audio.DEFAULT_CONFIG.sample_rate (not imported at the top: this file also runs standalone as the
# worker script; tests/test_corpus.py checks that the two agree)
SAMPLE_RATE = 16000
SILENCE = "_"  # our name for eSpeak's pause "phonemes" (empty names in IPA mode)
INSTALL_HINT = "eSpeak NG is not installed: run `apt-get install espeak-ng` (Debian/Ubuntu package espeak-ng)."


class TTSError(RuntimeError):
    """Speech cannot be synthesised (eSpeak NG missing, unknown voice, synthesis failure)."""


@dataclass
class Speech:
    """Synthesised speech.

    samples: float32 [N] in [-1, 1] at ``sample_rate`` (16 kHz).
    phonemes: list of (phoneme IPA name, start_ms, end_ms), in time order, covering the audio;
        pauses are named ``SILENCE`` ("_").
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: list[tuple[str, float, float]]
    text: str = ""
    voice: str = ""
    rate_wpm: int = 175
    pitch: int = 50
    backend: str = field(default="libespeak-ng")

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate


# --- the C library through ctypes (layout from /usr/include/espeak-ng/speak_lib.h, package libespeak-ng-dev) ---

AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: like RETRIEVAL, returns when synthesis is complete
INITIALIZE_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS
INITIALIZE_PHONEME_IPA = 0x0002  # espeakINITIALIZE_PHONEME_IPA: phoneme events carry IPA names
INITIALIZE_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: return an error instead of exit() without data
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7  # espeak_EVENT_TYPE
POS_CHARACTER = 1  # espeak_POSITION_TYPE
CHARS_UTF8 = 1  # espeakCHARS_UTF8
PARAM_RATE, PARAM_PITCH = 1, 3  # espeak_PARAMETER: espeakRATE (words per minute), espeakPITCH (0-100)
EE_OK = 0  # espeak_ERROR


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class EspeakEvent(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h): 40 bytes on x86-64."""

    _fields_ = [
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE (an enum: int)
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms within the generated speech
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),  # id.string: the phoneme name for PHONEME events (UTF-8, <= 8 bytes)
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(EspeakEvent))


class _EspeakLibrary:
    """The process-wide eSpeak NG engine (the C library keeps global state, so one instance and a lock)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        options = INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if self.sample_rate <= 0:
            raise TTSError("espeak_Initialize failed (espeak-ng-data not found?). " + INSTALL_HINT)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._callback = _SYNTH_CALLBACK(self._on_synth)  # keep a reference: the C side holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_synth(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            name = e.id.string.decode("utf-8", errors="ignore") if e.type == EVENT_PHONEME else ""
            self._events.append((e.type, e.audio_position, name))
            i += 1
        return 0  # 0: continue synthesis

    def synthesize(self, text: str, voice: str, rate_wpm: int, pitch: int):
        """Audio int16 [N] at ``self.sample_rate`` and the raw phoneme events (name, ms)."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise TTSError(f"unknown eSpeak NG voice {voice!r}; try e.g. 'en', 'de', 'fr', 'es', 'en+f3' "
                               "(`espeak-ng --voices` lists languages, `--voices=variant` the +variants)")
            self.lib.espeak_SetParameter(PARAM_RATE, int(rate_wpm), 0)
            self.lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            if err != EE_OK:
                raise TTSError(f"espeak_Synth failed with error {err} for text {text[:60]!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events = [(name, pos) for typ, pos, name in self._events if typ == EVENT_PHONEME]
            return audio, events


_ENGINE: _EspeakLibrary | None = None
_ENGINE_ERROR: str | None = None


def _load_library() -> ctypes.CDLL | None:
    for name in ["libespeak-ng.so.1", ctypes.util.find_library("espeak-ng"), "libespeak-ng.dylib"]:
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


def _engine() -> _EspeakLibrary | None:
    """The in-process ctypes engine, or None when libespeak-ng cannot be loaded (then the CLI is used)."""
    global _ENGINE, _ENGINE_ERROR
    if _ENGINE is None and _ENGINE_ERROR is None:
        lib = _load_library()
        if lib is None:
            _ENGINE_ERROR = "libespeak-ng.so.1 not found"
        else:
            try:
                _ENGINE = _EspeakLibrary(lib)
            except TTSError as e:
                _ENGINE_ERROR = str(e)
    return _ENGINE


# Why a fresh worker process per utterance. libespeak-ng keeps synthesis state in process-global variables that
# no API call resets (espeak-ng 1.51 wavegen.c): the pitch-flutter phase (static Flutter_ix), the automatic gain
# control (static agc), the breath-noise resonator memories (rbreath[].x1/x2), the echo buffer, the per-cycle
# counters; and the breath noise of voices with a "breath" line (the +f1..f5 variants: en+f3) is glibc rand(),
# one process-wide stream. So an utterance's samples depend on every utterance spoken before it in the process
# (other languages, voices, variants: each leaves different state), e.g. the default corpus's sentence 2 in
# another voice changes sentence 3. `espeak_Initialize` again does not help (it resets none of these).
# The fix is to give every utterance the state of a freshly loaded library: this file runs as a script in a new
# interpreter (~0.15 s), started with -I (no script folder on sys.path, no PYTHON* variables such as
# PYTHONUNBUFFERED, no user site), which seeds rand() with glibc's default seed 1 right before speaking (a
# library that consumed rand() while the worker started must not shift the noise), writes the samples with a
# loop that cannot drop a partial write, and whose output length the parent checks.
# tests/test_corpus.py::test_tts_is_independent_of_earlier_utterances_and_load speaks sentence A, then other
# languages / voices / variants, then A again, also while another process burns CPU, and asserts bit-identical
# samples and phoneme times.
_WORKER_FLAG = "--espeak-worker"


def _seed_libc_rand(seed: int = 1) -> None:
    """``srand(seed)`` of the C library eSpeak NG draws its breath noise from (1: glibc's default state)."""
    libc = ctypes.CDLL(None)  # the process's own symbols: the libc libespeak-ng.so.1 is linked against
    libc.srand.argtypes = [ctypes.c_uint]
    libc.srand(seed)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a raw write to a pipe may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _worker_main() -> int:
    """Worker: read one JSON request on stdin, answer a JSON header line then the raw int16 samples."""
    import json
    import sys

    req = json.loads(sys.stdin.readline())
    lib = _load_library()
    if lib is None:
        sys.stdout.write(json.dumps({"error": "nolib"}) + "\n")
        return 0
    try:
        engine = _EspeakLibrary(lib)
        _seed_libc_rand(1)
        audio, events = engine.synthesize(req["text"], req["voice"], req["rate_wpm"], req["pitch"])
    except TTSError as e:
        sys.stdout.write(json.dumps({"error": str(e)}) + "\n")
        return 0
    head = {"sample_rate": engine.sample_rate, "n": int(audio.size), "events": events}
    sys.stdout.flush()
    _write_all(sys.stdout.fileno(), (json.dumps(head) + "\n").encode()
               + np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return 0


def _synthesize_isolated(text: str, voice: str, rate_wpm: int, pitch: int):
    """(int16 audio, sample rate, events) from a fresh worker process, or None without libespeak-ng."""
    import json
    import sys

    req = json.dumps({"text": text, "voice": voice, "rate_wpm": int(rate_wpm), "pitch": int(pitch)}) + "\n"
    r = subprocess.run([sys.executable, "-I", str(Path(__file__).resolve()), _WORKER_FLAG], input=req.encode(),
                       capture_output=True, timeout=120)
    head_line, _, body = r.stdout.partition(b"\n")
    if r.returncode != 0 or not head_line:
        raise TTSError(f"the eSpeak NG worker failed (exit {r.returncode}): {r.stderr.decode(errors='replace')[-500:]}")
    head = json.loads(head_line)
    if head.get("error") == "nolib":
        return None
    if "error" in head:
        raise TTSError(head["error"])
    if len(body) != 2 * head["n"]:
        raise TTSError(f"the eSpeak NG worker sent {len(body)} bytes of audio, announced {2 * head['n']}")
    audio = np.frombuffer(body, dtype="<i2")
    return audio, int(head["sample_rate"]), [(str(n), int(p)) for n, p in head["events"]]


def espeak_backend() -> str:
    """Which eSpeak NG route :func:`synthesize` uses: 'libespeak-ng' (ctypes), 'cli', or raises TTSError."""
    if _load_library() is not None:
        return "libespeak-ng"
    if shutil.which("espeak-ng"):
        return "cli"
    raise TTSError(INSTALL_HINT)


def _events_to_intervals(events: list[tuple[str, int]], duration_ms: float) -> list[tuple[str, float, float]]:
    """Phoneme onsets -> (name, start_ms, end_ms): each phoneme lasts until the next one, the last to the end."""
    out: list[tuple[str, float, float]] = []
    for k, (name, pos) in enumerate(events):
        start = float(min(pos, duration_ms))
        end = float(min(events[k + 1][1], duration_ms)) if k + 1 < len(events) else duration_ms
        name = name.strip() or SILENCE
        if end <= start:
            continue
        if out and out[-1][0] == SILENCE and name == SILENCE:  # merge runs of pauses
            out[-1] = (SILENCE, out[-1][1], end)
        else:
            out.append((name, start, end))
    if out and out[0][1] > 0:
        out.insert(0, (SILENCE, 0.0, out[0][1]))
    if out and out[-1][2] < duration_ms:
        out.append((SILENCE, out[-1][2], duration_ms))
    return out


def _spread_phonemes(ipa: str, samples: np.ndarray, sr: int) -> list[tuple[str, float, float]]:
    """CLI fallback: spread the IPA string over the voiced span of the audio (vowels weigh 2, consonants 1)."""
    from .visemes import is_vowel  # local import: visemes imports nothing from here

    stress = "ˈˌ'"
    tokens: list[str] = []
    for word in ipa.split():
        tokens += [c for c in word if c not in stress and not ("\u0300" <= c <= "\u036f") and c not in "ːˑ"]
        tokens.append(SILENCE)
    duration_ms = 1000.0 * len(samples) / sr
    hop = sr // 100
    env = np.array([np.abs(samples[i:i + hop]).mean() for i in range(0, max(len(samples) - hop, 1), hop)])
    voiced = np.nonzero(env > 0.05 * (env.max() + 1e-9))[0]
    t0, t1 = (voiced[0] * 10.0, (voiced[-1] + 1) * 10.0) if len(voiced) else (0.0, duration_ms)
    weights = np.array([2.0 if is_vowel(t) else (0.5 if t == SILENCE else 1.0) for t in tokens])
    edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(weights) / max(weights.sum(), 1e-9)])
    events = [(SILENCE, 0)] + [(t, int(e)) for t, e in zip(tokens, edges[:-1])] + [(SILENCE, int(t1))]
    return _events_to_intervals(events, duration_ms)


def _synthesize_cli(text: str, voice: str, rate_wpm: int, pitch: int):
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise TTSError(INSTALL_HINT)
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        args = [exe, "-v", voice, "-s", str(rate_wpm), "-p", str(pitch)]
        r = subprocess.run(args + ["-w", str(wav), text], capture_output=True, text=True)
        if r.returncode != 0 or not wav.is_file():
            raise TTSError(f"espeak-ng failed for voice {voice!r}: {r.stderr.strip()}")
        samples, sr = sf.read(str(wav), dtype="float32")
        ipa = subprocess.run(args + ["-q", "--ipa", text], capture_output=True, text=True).stdout
    return samples, int(sr), ipa


def synthesize(text: str, voice: str = "en", rate_wpm: int = 175, pitch: int = 50, *, isolated: bool = True) -> Speech:
    """Speak ``text`` with eSpeak NG; audio resampled from 22050 Hz to 16 kHz, plus phoneme timings.

    voice: an eSpeak NG voice name, optionally with a variant: "en", "en-us", "de", "fr+f3", "es+m2".
    rate_wpm: words per minute (eSpeak accepts 80-450). pitch: 0-100 (50 is the voice's default).
    isolated: speak in a fresh worker process (default), which makes the samples a pure function of the
        arguments; False speaks in this process (saves ~0.15 s, but eSpeak NG's carried-over state then makes the
        samples depend on what this process spoke before: see the comment above ``_WORKER_FLAG``).
    """
    if not text or not text.strip():
        raise ValueError("text is empty: give at least one word to speak")
    if not 80 <= int(rate_wpm) <= 450:
        raise ValueError(f"rate_wpm must be in [80, 450] (eSpeak's range), got {rate_wpm}")
    if not 0 <= int(pitch) <= 100:
        raise ValueError(f"pitch must be in [0, 100], got {pitch}")
    from ..audio import resample  # (imported here: this file also runs as the worker script)

    result = None
    if _load_library() is None:
        pass  # no C library: the command-line fallback below
    elif isolated:
        result = _synthesize_isolated(text, voice, rate_wpm, pitch)
    elif _engine() is not None:
        audio, events = _engine().synthesize(text, voice, rate_wpm, pitch)
        result = (audio, _engine().sample_rate, events)
    if result is not None:
        audio, sr, events = result
        samples = resample(audio.astype(np.float32) / 32768.0, sr, SAMPLE_RATE)
        phonemes = _events_to_intervals(events, 1000.0 * len(samples) / SAMPLE_RATE)
        backend = "libespeak-ng"
    else:
        raw, sr, ipa = _synthesize_cli(text, voice, rate_wpm, pitch)
        samples = resample(raw, sr, SAMPLE_RATE)
        phonemes = _spread_phonemes(ipa, samples, SAMPLE_RATE)
        backend = "cli"
    if samples.size == 0:
        raise TTSError(f"eSpeak NG produced no audio for {text[:60]!r} with voice {voice!r}")
    return Speech(samples=samples, sample_rate=SAMPLE_RATE, phonemes=phonemes, text=text, voice=voice,
                  rate_wpm=int(rate_wpm), pitch=int(pitch), backend=backend)


if __name__ == "__main__" and _WORKER_FLAG in __import__("sys").argv:
    raise SystemExit(_worker_main())
