"""Benchmark: one announcement to N subscribers against the fake WeChat API.

Runs on demand, not in the tests:

    python bench/push.py [--subscribers 10000] [--senders 8] [--fallback template|mass]
                         [--out-of-window 0.3] [--demo]

Prints the throughput (recipients per second, and announcements per second to that many
subscribers) and the median per-recipient latency: the API call itself, and the time from
the job's start until a recipient was reached.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.push import announcements, runner  # noqa: E402
from bot.wechat.client import WeChatApi  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.fake_wechat import FakeWeChat  # noqa: E402


def timed(api: WeChatApi, latencies: list[float]) -> None:
    """Record how long each per-recipient API call takes."""
    lock = threading.Lock()
    for name in ("send_text", "send_template"):
        call = getattr(api, name)

        def wrapper(*args, _call=call, **kwargs):
            started = time.perf_counter()
            try:
                return _call(*args, **kwargs)
            finally:
                with lock:
                    latencies.append(time.perf_counter() - started)

        setattr(api, name, wrapper)


def serve_fake(conn) -> None:
    """Child process: run the fake API (its own GIL, as WeChat is elsewhere) until killed."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    api = FakeWeChat().start()
    conn.send(api.url)
    threading.Event().wait()


def start_fake() -> tuple[str, multiprocessing.Process]:
    """The fake API in a child process; returns its URL and the process."""
    parent, child = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=serve_fake, args=(child,), daemon=True)
    process.start()
    return parent.recv(), process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--fallback", choices=("template", "mass"), default="template")
    parser.add_argument("--out-of-window", type=float, default=0.3,
                        help="share of subscribers outside the 48-hour window")
    parser.add_argument("--demo", action="store_true", help="demo mode: simulator inbox, no API")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    url, fake = (None, None) if args.demo else start_fake()
    tmp = Path(tempfile.mkdtemp(prefix="push-bench-"))
    wechat = {} if url is None else {"app_secret": "bench", "api_base_url": url}
    settings = make_settings(tmp, wechat=wechat, push={
        "fallback_channel": args.fallback, "template_id": "TPL-BENCH",
        "rate_per_second": 0.0, "daily_quota": 10**9})
    runtime = runner.PushSender(settings)
    latencies: list[float] = []
    if runtime.api is not None:
        timed(runtime.api, latencies)

    database = runtime.open_db()
    now = time.time()
    cutoff = int(args.subscribers * (1 - args.out_of_window))
    database["subscribers"].insert_all(
        {"openid": f"o-bench-{i:06}", "subscribed": 1, "subscribed_at": now - 10**6,
         "last_seen_at": now - (3600 if i < cutoff else 100 * 3600)}
        for i in range(args.subscribers))
    job_id = announcements.start_job(database, announcements.create_announcement(
        database, "压力测试通知：培训报名开始", "https://example.org", "all", "bench"))

    started = time.perf_counter()
    result = runner.run_job(runtime, job_id, senders=args.senders)
    elapsed = time.perf_counter() - started

    reached = sorted(r[0] for r in database.conn.execute(
        "SELECT updated_at FROM push_recipients WHERE job_id = ? AND status = 'delivered'", (job_id,)))
    job_start = database.conn.execute("SELECT started_at FROM push_jobs WHERE id = ?",
                                      (job_id,)).fetchone()[0]
    mode = "demo inbox" if url is None else f"fake API, fallback {args.fallback}"
    print(f"{args.subscribers} subscribers, {mode}, {args.senders} sender threads")
    print(f"delivered {result['delivered']}, failed {result['failed']}, by channel {result['by_channel']}")
    print(f"elapsed {elapsed:.2f} s: {result['delivered'] / elapsed:.0f} recipients/s, "
          f"{1 / elapsed:.3f} announcements/s to {args.subscribers} subscribers")
    if latencies:
        print(f"median API call per recipient {statistics.median(latencies) * 1000:.1f} ms "
              f"(p95 {statistics.quantiles(latencies, n=20)[-1] * 1000:.1f} ms)")
    if reached:
        print(f"median time from job start to a recipient reached "
              f"{statistics.median(reached) - job_start:.2f} s")
    if fake is not None:
        fake.terminate()


if __name__ == "__main__":
    main()
