"""Benchmark: voice messages from the webhook to the reply, and ffmpeg's conversion cost.

Runs on demand, not in the tests:

    python bench/voice.py [--runs 20] [--seconds 5]

For each recogniser — "wechat" against the fake WeChat API (which answers at once, so
the figure is the service's own cost), "command" with a trivial program (/bin/sh echo) —
prints the median and p95 time from posting a signed voice message to the reply, next to
a typed message. Then the conversion cost per second of audio: decoding to 16 kHz WAV
(every recogniser) and encoding that to MP3 (WeChat's API), for 5 to 60 s of Speex.
"""
from __future__ import annotations

import argparse
import functools
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.voice import convert, to_wav  # noqa: E402
from tests import wx  # noqa: E402
from tests.conftest import Chat, create_app, make_settings  # noqa: E402
from tests.fake_wechat import FakeWeChat  # noqa: E402


def make_audio(path: Path, seconds: float) -> Path:
    """Speech-band noise in Speex, one of WeChat's two voice formats."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"anoisesrc=color=pink:duration={seconds}:sample_rate=16000", "-ac", "1",
                    "-c:a", "libspeex", "-f", "ogg", str(path)], check=True)
    return path


def post_voice(chat: Chat, api: FakeWeChat, runtime, audio: bytes) -> object:
    """One voice message, its audio where the app's recogniser fetches it."""
    if runtime.api is not None:
        api.media["m1"] = audio
        media_id = "m1"
    else:
        media_id = runtime.voice.media.store(audio)
    return chat.post(wx.message_xml(chat.openid, "voice", MediaId=media_id))


def timings(send, runs: int) -> tuple[float, float]:
    """Median and p95 milliseconds of `runs` messages through the webhook."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = wx.reply_content(send().get_data(as_text=True))
        times.append((time.perf_counter() - started) * 1000)
        assert "您说的是" in reply or "请回复数字选择" in reply, reply
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def end_to_end(folder: Path, audio: bytes, runs: int) -> None:
    api = FakeWeChat().start()
    api.transcript = "菜单"
    try:
        cases = {
            "wechat": {"wechat": {"app_secret": "s", "api_base_url": api.url}},
            "command": {"voice": {"recogniser": "command",
                                  "command": ["/bin/sh", "-c", "echo 菜单", "sh", "{wav}"]}},
        }
        print(f"{'recogniser':<12}{'voice p50':>12}{'voice p95':>12}{'typed p50':>12}")
        for name, tables in cases.items():
            settings = make_settings(folder / name, **tables)
            app = create_app(settings)
            chat = Chat(app.test_client(), f"o-bench-{name}")
            runtime = app.extensions["bot"]
            voice = functools.partial(post_voice, chat, api, runtime, audio)
            timings(voice, 2)  # warm up: token, first ffmpeg run
            p50, p95 = timings(voice, runs)
            typed, _ = timings(functools.partial(chat.post, wx.text_xml(chat.openid, "菜单")), runs)
            print(f"{name:<12}{p50:>10.0f}ms{p95:>10.0f}ms{typed:>10.1f}ms")
            runtime.close()
    finally:
        api.stop()


def conversion(folder: Path, runs: int) -> None:
    print(f"\n{'audio':>6}{'to WAV':>10}{'per s':>9}{'WAV to MP3':>13}{'per s':>9}")
    for seconds in (5, 15, 30, 60):
        source = make_audio(folder / f"a{seconds}.spx", seconds)
        wav, mp3 = folder / "a.wav", folder / "a.mp3"
        decode, encode = [], []
        for _ in range(max(3, runs // 4)):
            started = time.perf_counter()
            to_wav("ffmpeg", source, wav, 60, 60)
            decode.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            convert("ffmpeg", wav, mp3, ["-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"], 60)
            encode.append((time.perf_counter() - started) * 1000)
        d, e = statistics.median(decode), statistics.median(encode)
        print(f"{seconds:>5}s{d:>8.0f}ms{d / seconds:>7.1f}ms{e:>11.0f}ms{e / seconds:>7.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5, help="length of the voice message")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio = make_audio(folder / "voice.spx", args.seconds).read_bytes()
        print(f"{args.runs} messages of {args.seconds:g} s voice each, in-process (no gunicorn)\n")
        end_to_end(folder, audio, args.runs)
        conversion(folder, args.runs)


if __name__ == "__main__":
    main()
