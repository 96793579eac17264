"""Speech and other sounds for the synthetic world, with exact phoneme timings.

English speech comes from espeak-ng, loaded over ctypes from the ``espeakng-loader`` wheel (no system
package). espeak reports a PHONEME event for every phoneme it speaks, carrying the sample index at which
the phoneme starts; those indices are the timings the mouth follows, so lip motion and sound share one
clock. The 22050 Hz output is resampled to the model's 16 kHz.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE

"""Audio rate of every sound in the world (the model's rate)."""

VOICES = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029",
)
"""espeak English voices used for identities' speech."""

VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "ed", "linda")
"""espeak voice variants (appended as ``voice+variant``): different timbres and pitches."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """One spoken phoneme: espeak's mnemonic (stress marks kept) and its start/end in seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True)
class EspeakEvent:
    """A raw espeak PHONEME event: its mnemonic, ``audio_position`` (ms) and sample index at 22050 Hz."""

    symbol: str
    audio_position_ms: int
    sample: int


@dataclass
class Speech:
    """A 16 kHz mono waveform (float32, -1..1) and the phonemes spoken in it."""

    waveform: np.ndarray
    phonemes: list[Phoneme]

    @property
    def duration(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


class _Espeak:
    """The process-wide espeak-ng engine (the C library keeps global state, so calls are serialised)."""

    _lock = threading.Lock()
    _instance: _Espeak | None = None

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise from the espeakng-loader wheel")
        self._chunks: list[np.ndarray] = []
        self._events: list[EspeakEvent] = []
        self._callback = _CALLBACK(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _Espeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                symbol = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self._events.append(EspeakEvent(symbol, ev.audio_position, ev.sample))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int):
        """Speak in a forked child, so every utterance starts from the freshly initialised engine.

        espeak-ng keeps state across utterances (pitch flutter phase, Klatt filter memory), which makes
        the same text come out slightly differently depending on what was spoken before; a child forked
        from a process that never spoke always starts from the same state, so the output is reproducible.
        """
        import os
        import pickle

        if not hasattr(os, "fork"):  # no fork (Windows): same sound, not bit-reproducible
            return self._speak(text, voice, rate, pitch, pitch_range)
        with self._lock:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: speak, send the result, leave without running any Python cleanup
                code = 0
                try:
                    os.close(read_end)
                    result = self._speak(text, voice, rate, pitch, pitch_range)
                    payload = pickle.dumps(("ok", result))
                except BaseException as err:  # report any failure to the parent
                    payload, code = pickle.dumps((type(err).__name__, str(err))), 1
                with os.fdopen(write_end, "wb") as f:
                    f.write(payload)
                os._exit(code)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as f:
                status, result = pickle.loads(f.read())
            os.waitpid(pid, 0)
        if status == "ValueError":
            raise ValueError(result)
        if status != "ok":
            raise RuntimeError(f"espeak-ng failed: {status}: {result}")
        return result

    def _speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak has no voice {voice!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return wav, list(self._events)


def espeak_events(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, pitch_range: int = 50):
    """Run espeak and return (int16 waveform at ``espeak_sample_rate()``, raw PHONEME events)."""
    return _Espeak.get().synthesize(text, voice, rate, pitch, pitch_range)


def espeak_sample_rate() -> int:
    return _Espeak.get().rate


def _is_pause(symbol: str) -> bool:
    return symbol.startswith("_")


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, pitch_range: int = 50) -> Speech:
    """Speak ``text``; each phoneme starts at its espeak event's sample and ends where the next one starts.

    Pauses (espeak's ``_`` phonemes) are dropped from the list: the mouth rests wherever no phoneme is.
    """
    from scipy.signal import resample_poly

    wav, events = espeak_events(text, voice, rate, pitch, pitch_range)
    native = espeak_sample_rate()
    g = np.gcd(SAMPLE_RATE, native)
    audio = resample_poly(wav.astype(np.float64) / 32768.0, SAMPLE_RATE // g, native // g).astype(np.float32)
    phonemes = []
    for ev, nxt in zip(events, events[1:] + [None]):
        if _is_pause(ev.symbol):
            continue
        end = (nxt.sample if nxt is not None else len(wav)) / native
        phonemes.append(Phoneme(ev.symbol, ev.sample / native, end))
    return Speech(audio, phonemes)


def noise(duration: float, rng: np.random.Generator, level: float = 0.3) -> np.ndarray:
    """Band-limited noise bursts (wind, hiss, rustle): sound that is not speech."""
    from scipy.signal import butter, sosfilt

    n = int(round(duration * SAMPLE_RATE))
    low = rng.uniform(100, 1500)
    sos = butter(4, [low, min(7000.0, low * rng.uniform(2, 6))], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    envelope = _bursts(n, rng)
    x = x / (np.abs(x).max() + 1e-9) * envelope * level
    return x.astype(np.float32)


def tones(duration: float, rng: np.random.Generator, level: float = 0.3) -> np.ndarray:
    """Beeps and hums at random pitches: periodic sound that is not speech."""
    n = int(round(duration * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        f = rng.uniform(150, 2000)
        x += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x = x / (np.abs(x).max() + 1e-9) * _bursts(n, rng) * level
    return x.astype(np.float32)


def _bursts(n: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth on/off envelope with a few bursts."""
    env = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        start = rng.integers(0, max(1, n - SAMPLE_RATE // 4))
        length = rng.integers(SAMPLE_RATE // 5, SAMPLE_RATE)
        env[start : start + length] = 1.0
    ramp = np.hanning(SAMPLE_RATE // 25 * 2 + 1)
    return np.convolve(env, ramp / ramp.sum(), mode="same")


def room_tone(n: int, rng: np.random.Generator, level: float = 3e-4) -> np.ndarray:
    """Faint background noise, so that "silence" is not digital zero."""
    return (rng.standard_normal(n) * level).astype(np.float32)
