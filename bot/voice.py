"""Voice messages WeChat sends without a transcript: fetch, convert, recognise.

A Transcriber fetches the audio (WeChat's media/get, or in demo mode the simulator's
uploads in the data folder), has ffmpeg turn it into 16 kHz mono WAV, refuses what is
too long, and hands the file to a Recogniser: WeChat's speech-to-text API or a local
program (whisper.cpp, Vosk, …). Every failure is a VoiceError; the handler words it.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import tempfile
import time
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wechatpy.exceptions import WeChatClientException

from bot.settings import Settings
from bot.wechat.client import WeChatApi

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what WeChat's API and whisper.cpp / Vosk models expect
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A recogniser writes a read-out number as digits or as Chinese numerals; forms and menus
# want digits, so a transcript made only of numerals becomes digits.
_NUMERALS = str.maketrans("零〇幺一二两三四五六七八九", "0011223456789")
_ONLY_NUMERALS = re.compile(r"[\d零〇幺一二两三四五六七八九\s,，、。]+")
_CHINESE_NUMERAL = re.compile(r"[零〇幺一二两三四五六七八九]")


class VoiceError(Exception):
    """The voice could not be turned into text; reason says why (for the log)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # download, convert, too_long, empty, recogniser
        self.elapsed_ms: float | None = None  # time spent before it failed


class Recogniser(Protocol):
    """Speech to text for one 16 kHz mono WAV file; "" when nothing was said."""

    def recognise(self, audio: Path) -> str:
        """The words in the file; raises VoiceError when it cannot tell."""
        ...


class MediaSource(Protocol):
    """Where a voice message's audio comes from."""

    def fetch(self, media_id: str) -> bytes:
        """The audio file's bytes; raises VoiceError when it cannot be had."""
        ...


@dataclass(frozen=True)
class Transcript:
    """What a voice message said, how long it was and how long recognising it took."""
    text: str
    seconds: float
    elapsed_ms: float


# --- conversion ---------------------------------------------------------------------

def convert(ffmpeg: str, source: Path, target: Path, codec: list[str], timeout: float,
            limit_seconds: float | None = None) -> None:
    """Have ffmpeg decode source (any format it knows) into target, 16 kHz mono."""
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
            "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    if limit_seconds is not None:
        args += ["-t", f"{limit_seconds:.2f}"]  # a huge file costs no more than the limit
    try:
        done = subprocess.run(args + codec + [str(target)], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VoiceError("convert", "ffmpeg timed out") from None
    except OSError as exc:
        raise VoiceError("convert", f"ffmpeg did not start: {exc}") from None
    if done.returncode != 0:
        raise VoiceError("convert", _tail(done.stderr))


def to_wav(ffmpeg: str, source: Path, target: Path, timeout: float, max_seconds: float) -> float:
    """Decode into 16-bit 16 kHz mono WAV; returns its length in seconds (VoiceError past max)."""
    # A little more than the limit is decoded, so that too long is told apart from just right.
    convert(ffmpeg, source, target, ["-c:a", "pcm_s16le", "-f", "wav"], timeout, max_seconds + 0.5)
    try:
        with wave.open(str(target), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise VoiceError("convert", f"unreadable WAV: {exc}") from None
    if seconds > max_seconds:
        raise VoiceError("too_long", f"more than {max_seconds:.0f} s")
    if seconds <= 0:
        raise VoiceError("empty", "no audio")
    return seconds


def _tail(stderr: bytes) -> str:
    return stderr.decode("utf-8", "replace").strip()[-300:]


def tidy(text: str) -> str:
    """A transcript as the user would have typed it: a read-out number as digits."""
    text = " ".join(text.split())
    if _ONLY_NUMERALS.fullmatch(text) and _CHINESE_NUMERAL.search(text):
        return re.sub(r"[\s,，、。]", "", text.translate(_NUMERALS))
    return text


# --- recognisers --------------------------------------------------------------------

class WeChatRecogniser:
    """WeChat's speech-to-text API: upload MP3, then ask for the result until it is there.

    https://developers.weixin.qq.com/doc/offiaccount/Intelligent_Interface/AI_Open_API.html
    """

    def __init__(self, api: WeChatApi, ffmpeg: str, timeout: float, poll_seconds: float = 0.2):
        self.api = api
        self.ffmpeg = ffmpeg
        self.timeout = timeout
        self.poll_seconds = poll_seconds

    def recognise(self, audio: Path) -> str:
        """Upload the audio as MP3 and wait up to timeout seconds for WeChat's text."""
        mp3 = audio.with_suffix(".mp3")
        convert(self.ffmpeg, audio, mp3, ["-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"],
                self.timeout)
        voice_id = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout
        try:
            self.api.add_voice_for_recognition(voice_id, mp3.read_bytes())
            while True:
                result = self.api.voice_recognition_result(voice_id)
                if result is not None:
                    return result
                if time.monotonic() + self.poll_seconds > deadline:
                    raise VoiceError("recogniser", "WeChat gave no result in time")
                time.sleep(self.poll_seconds)
        except WeChatClientException as exc:
            raise VoiceError("recogniser", f"WeChat errcode {exc.errcode}") from None


class CommandRecogniser:
    """A local program given the WAV path ("{wav}" in its arguments) that prints the text."""

    def __init__(self, command: tuple[str, ...], timeout: float):
        self.command = command
        self.timeout = timeout

    def recognise(self, audio: Path) -> str:
        """Run the program; its stdout is the text, a non-zero exit or a timeout a failure."""
        args = [arg.replace("{wav}", str(audio)) for arg in self.command]
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise VoiceError("recogniser", f"command timed out after {self.timeout:.0f} s") from None
        except OSError as exc:
            raise VoiceError("recogniser", f"command did not start: {exc}") from None
        if done.returncode != 0:
            raise VoiceError("recogniser", f"command exited {done.returncode}: {_tail(done.stderr)}")
        return done.stdout.decode("utf-8", "replace")


# --- media --------------------------------------------------------------------------

class WeChatMedia:
    """Voice from WeChat's temporary media (media/get)."""

    def __init__(self, api: WeChatApi):
        self.api = api

    def fetch(self, media_id: str) -> bytes:
        """Download the file WeChat holds under media_id."""
        try:
            return self.api.download_media(media_id)
        except WeChatClientException as exc:
            raise VoiceError("download", f"WeChat errcode {exc.errcode}") from None


class LocalMedia:
    """Demo mode: voice the simulator stored in the data folder, read once then deleted."""

    def __init__(self, folder: Path):
        self.folder = folder

    def store(self, data: bytes) -> str:
        """Keep an uploaded recording (owner-only: it may hold spoken personal data); its media id."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        media_id = secrets.token_urlsafe(16)
        fd = os.open(self.folder / media_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return media_id

    def fetch(self, media_id: str) -> bytes:
        """The stored recording, removed as it is read (it is needed once)."""
        if not _MEDIA_ID.fullmatch(media_id):
            raise VoiceError("download", "not a media id")
        path = self.folder / media_id
        try:
            data = path.read_bytes()
        except OSError:
            raise VoiceError("download", "no such recording") from None
        path.unlink(missing_ok=True)
        return data


# --- the pipeline -------------------------------------------------------------------

class Transcriber:
    """Media id -> Transcript: fetch, convert to 16 kHz mono WAV, check the length, recognise."""

    def __init__(self, media: MediaSource, recogniser: Recogniser, ffmpeg: str = "ffmpeg",
                 timeout: float = 15.0, max_seconds: float = 60.0):
        self.media = media
        self.recogniser = recogniser
        self.ffmpeg = ffmpeg
        self.timeout = timeout
        self.max_seconds = max_seconds

    def transcribe(self, media_id: str) -> Transcript:
        """What the voice said (VoiceError with reason "empty" when nothing was heard)."""
        started = time.perf_counter()
        try:
            data = self.media.fetch(media_id)
            with tempfile.TemporaryDirectory(prefix="cyt-voice-") as folder:  # owner-only
                source, wav = Path(folder) / "voice", Path(folder) / "voice.wav"
                source.write_bytes(data)
                seconds = to_wav(self.ffmpeg, source, wav, self.timeout, self.max_seconds)
                converted = time.perf_counter()
                text = tidy(self.recogniser.recognise(wav))
            if not text:
                raise VoiceError("empty", "no words recognised")
        except VoiceError as exc:
            exc.elapsed_ms = (time.perf_counter() - started) * 1000
            raise
        done = time.perf_counter()
        logger.info("voice of %.1f s: fetched and converted in %.0f ms, recognised in %.0f ms",
                    seconds, (converted - started) * 1000, (done - converted) * 1000)
        return Transcript(text, seconds, (done - started) * 1000)


def media_folder(settings: Settings) -> Path:
    """Where demo mode keeps the simulator's recordings."""
    return settings.data_dir / "voice"


def build_transcriber(settings: Settings, api: WeChatApi | None) -> Transcriber | None:
    """The configured pipeline, or None when recognition is off."""
    voice = settings.voice
    mode = voice.mode(settings.wechat.demo)
    if mode == "off":
        return None
    recogniser: Recogniser
    if mode == "command":
        recogniser = CommandRecogniser(voice.command, voice.timeout_seconds)
    elif api is not None:
        recogniser = WeChatRecogniser(api, voice.ffmpeg, voice.timeout_seconds)
    else:  # settings refuse "wechat" in demo mode; nothing to call
        return None
    media: MediaSource = LocalMedia(media_folder(settings)) if api is None else WeChatMedia(api)
    return Transcriber(media, recogniser, voice.ffmpeg, voice.timeout_seconds, voice.max_seconds)
