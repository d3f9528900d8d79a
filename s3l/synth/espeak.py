"""A small ctypes binding to libespeak-ng, as bundled by the PyPI package ``espeakng-loader`` (GPL-3).

This module is the only place in s3l that imports ``espeakng_loader``, and it does so lazily: without the
``synth`` extra every other command still works, and :func:`engine` raises :class:`S3LError` telling the user
to ``pip install 's3l[synth]'``.

espeak is driven in ``AUDIO_OUTPUT_SYNCHRONOUS`` (retrieval) mode with phoneme events enabled: espeak calls our
callback with blocks of 16-bit samples at 22050 Hz and a list of events; each ``espeakEVENT_PHONEME`` event
carries the phoneme mnemonic and the exact sample index where that phoneme starts in the output. A phoneme lasts
until the next phoneme event (or the end of the audio).

libespeak-ng keeps global state, so there is one :class:`Espeak` per process (:func:`engine`). Synthesis is
deterministic: before every utterance both espeak's own random generator and the C library's ``rand()`` (used
by the Klatt voices' noise source) are re-seeded from the utterance seed, and the same inputs give the same
samples regardless of what was synthesised before.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l.errors import S3LError

ESPEAK_RATE = 22_050  # espeak-ng's fixed output rate for its own (non-mbrola) voices

# espeak_AUDIO_OUTPUT, espeak_EVENT_TYPE, espeak_PARAMETER values and flags from speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: six 4-byte ints, a pointer, then an 8-byte union (40 bytes on 64-bit platforms)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index in the output at ESPEAK_RATE
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Utterance:
    """espeak output: int16 samples at :data:`ESPEAK_RATE` and ``(start_sample, mnemonic)`` phoneme events."""

    samples: np.ndarray  # (T,) int16
    events: tuple[tuple[int, str], ...]


def _import_loader():
    try:
        import espeakng_loader
    except ImportError:
        raise S3LError(
            "the synthetic corpus needs espeak-ng, which s3l gets from the optional 'synth' extra: "
            "pip install 's3l[synth]'"
        ) from None
    return espeakng_loader


class Espeak:
    """The process-wide espeak-ng instance (create it through :func:`engine`)."""

    def __init__(self) -> None:
        loader = _import_loader()
        self.data_dir = Path(loader.get_data_path())  # .../espeak-ng-data
        try:
            lib = ctypes.CDLL(loader.get_library_path())
        except OSError as e:
            raise S3LError(f"{loader.get_library_path()}: cannot load libespeak-ng ({e})") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self._lib = lib
        self._libc = ctypes.CDLL(None)
        # The data path argument is the directory that *contains* espeak-ng-data.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_dir.parent).encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if rate != ESPEAK_RATE:
            raise S3LError(f"{self.data_dir}: espeak-ng failed to initialise (returned {rate})")
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _Callback(self._on_audio)  # keep a reference: espeak holds the raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((int(ev.sample), bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8")))
            i += 1
        return 0  # continue

    def set_voice(self, voice: str) -> None:
        """Select ``language[+variant]``, e.g. ``en-gb-x-rp+f3``."""
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise S3LError(f"{self.data_dir}: espeak-ng has no voice {voice!r}")
            self._voice = voice

    def synthesize(self, text: str, *, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> Utterance:
        """Speak ``text`` (UTF-8, punctuation shapes the prosody).

        ``rate`` in words per minute (80-450), ``pitch`` and ``pitch_range`` in 0-100 (50 = voice default).
        """
        self.set_voice(voice)
        # A voice change resets the parameters, so set them for every utterance.
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
        return Utterance(samples=samples, events=tuple(self._events))


@functools.lru_cache(maxsize=1)
def _engine(pid: int) -> Espeak:
    return Espeak()


def engine() -> Espeak:
    """The process's espeak instance (created on first use; a forked child gets its own)."""
    return _engine(os.getpid())


def data_dir() -> Path:
    """``espeak-ng-data`` of the installed loader package (without initialising the library)."""
    return Path(_import_loader().get_data_path())
