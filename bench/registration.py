"""Benchmark: many users filling in the training form at once, across worker processes.

Each process plays USERS subscribers through the signed webhook (bot.phone.Phone), turn
by turn and interleaved, all against one SQLite file, then reports per-message latency.

    python bench/registration.py --processes 4 --users 25
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import create_app  # noqa: E402
from bot.phone import Phone  # noqa: E402
from bot.settings import settings_from_dict  # noqa: E402
from bot.storage import engine, migrations
from bot.validators import id_check_digit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def settings_for(folder: Path):
    return settings_from_dict({
        "wechat": {"token": "bench"},
        "storage": {"database": str(folder / "bot.db")},
        "matcher": {"policies_dir": str(ROOT / "policies")},
        "county": {"townships": ["城关镇", "石桥镇", "青山乡"]},
        "courses": [{"id": "tea", "name": "茶叶种植加工", "capacity": 10_000}],
    })


def turns(n: int) -> list[str]:
    first = f"34010219900101{n % 1000:03d}"
    return ["我要报名培训", "1", "张三", f"138{n:08d}", first + id_check_digit(first), "石桥镇",
            "石门村", "是", "确认"]


def worker(args: tuple[str, int, int, Any]) -> tuple[list[float], float, float]:
    folder, index, users, barrier = args
    settings = settings_for(Path(folder))
    phone = Phone(create_app(settings), settings)
    scripts = [(f"o-{index}-{u}", turns(index * users + u)) for u in range(users)]
    barrier.wait()  # start together once every process has built its app
    began = time.time()
    latencies = []
    for step in range(len(scripts[0][1])):
        for openid, said in scripts:
            sent = time.perf_counter()
            reply = phone.send_text(openid, said[step])
            latencies.append(time.perf_counter() - sent)
            if not reply:
                raise SystemExit(f"no reply to {said[step]!r}")
    return latencies, began, time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--users", type=int, default=25, help="users per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        migrations.migrate(Path(folder) / "bot.db")
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, context.Pool(args.processes) as pool:
            barrier = manager.Barrier(args.processes)
            results = pool.map(worker, [(folder, i, args.users, barrier) for i in range(args.processes)])
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        latencies = sorted(x for r in results for x in r[0])
        database = engine.connect(Path(folder) / "bot.db")
        refs = [r["ref"] for r in database["applications"].rows]
    ms = [x * 1000 for x in latencies]
    print(f"{args.processes} processes x {args.users} users: {len(ms)} messages in {wall:.1f} s "
          f"({len(ms) / wall:.0f} msg/s)")
    print(f"latency ms: p50 {statistics.median(ms):.1f}  p95 {ms[int(len(ms) * 0.95)]:.1f}  "
          f"max {ms[-1]:.1f}")
    print(f"applications stored: {len(refs)}, unique references: {len(set(refs))}")


if __name__ == "__main__":
    main()
