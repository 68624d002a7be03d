"""Time the matcher against a plain rapidfuzz scan, on the shipped and synthetic bases.

Run on demand (takes a minute or two; not part of the tests):

    python bench/matcher.py

Prints median and p99 milliseconds per question for Matcher.match and for the baseline
rapidfuzz.process.extractOne over every example question, on policies/ and on synthetic
knowledge bases of 1,000 and 10,000 topics, then the start-up time of a fresh process that
loads the shipped knowledge base and builds the matcher (jieba dictionary included).
"""
from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rapidfuzz import process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import synthetic_kb  # noqa: E402  (after the path set-up)
from bot.knowledge.load import load_knowledge  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.settings import MatcherSettings  # noqa: E402

SHIPPED = ROOT / "policies"
SIZES = (1_000, 10_000)
QUESTIONS_PER_BASE = 300
# The plain scan takes up to a second per question at 10,000 topics: time fewer of them.
BASELINE_QUESTIONS = 40

# Questions in the styles villagers use, against the shipped base (typos, pinyin, voice,
# dialect, off-topic); written for the benchmark, not taken from any evaluation set.
SHIPPED_QUESTIONS = (
    "创业贷款能贷多少", "代款利息谁出", "daikuan zenme shenqing", "陪训要钱不", "返乡创业有啥政策",
    "营页执照怎么办", "在屋头开店地址能登记不", "注册资本可以分期交吗", "公务员辞职创业还有工资吗",
    "合作社怎么成立", "茶叶协会怎么入", "茭白基地在哪", "养牛有项目吗", "转人工", "电话多少",
    "我报的名审核了没", "最近有什么通知", "外地人来投资有什么优惠", "十佳创业之星怎么评",
    "明天下雨吗", "房贷利率多少", "驾校哪家好", "医保怎么交",
    "嗯那个我想问一下就是我在外头打了好多年工现在回来了想搞个养鸡场县里有没有啥子贷款可以借",
    "", "😀😀", "啊" * 5000,
)


def synthetic_questions(made: list[dict], count: int, seed: int = 11) -> list[str]:
    """Questions about random synthetic topics, phrased unlike their examples, plus noise."""
    rng = random.Random(seed)
    forms = ("{trade}{short}怎么弄", "请问{group}的{support}", "{place}{trade}有{short}没有",
             "我想了解一下{trade}方面的{support}政策", "{group}做{trade}", "明天天气怎么样")
    questions = []
    for _ in range(count):
        words = rng.choice(made)["words"]
        questions.append(rng.choice(forms).format(**words))
    return questions


def timings(function, questions: list[str]) -> list[float]:
    """Milliseconds per call, one call per question."""
    out = []
    for question in questions:
        start = time.perf_counter()
        function(question)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(values: list[float]) -> tuple[float, float]:
    """(median, 99th percentile)."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def bench_base(name: str, folder: Path, questions: list[str]) -> tuple[float, float]:
    """Print one base's figures; return the matcher's and the plain scan's medians (ms)."""
    start = time.perf_counter()
    kb = load_knowledge(folder)
    matcher = Matcher(kb, MatcherSettings(cache_size=0))  # time matching, not the cache
    built = time.perf_counter() - start
    examples = [e for topic in kb.topics.values() for e in topic.examples]
    questions = (questions * (QUESTIONS_PER_BASE // len(questions) + 1))[:QUESTIONS_PER_BASE]
    matcher.match(questions[0])  # warm caches before timing
    ours = summary(timings(matcher.match, questions))
    plain = summary(timings(lambda q: process.extractOne(q, examples), questions[:BASELINE_QUESTIONS]))
    print(f"{name}: {len(kb.topics)} topics, {len(examples)} examples, built in {built:.1f} s")
    print(f"  matcher   median {ours[0]:7.3f} ms   p99 {ours[1]:7.3f} ms")
    print(f"  extractOne median {plain[0]:7.3f} ms   p99 {plain[1]:7.3f} ms"
          f"   ({BASELINE_QUESTIONS} questions)")
    print(f"  ratio extractOne/matcher (median): {plain[0] / ours[0]:.1f}x")
    return ours[0], plain[0]


def startup_seconds() -> float:
    """Wall time of a fresh interpreter that loads policies/ and builds the matcher."""
    code = ("from pathlib import Path; from bot.knowledge.load import load_knowledge; "
            "from bot.matching.matcher import Matcher; from bot.settings import MatcherSettings; "
            f"Matcher(load_knowledge(Path({str(SHIPPED)!r})), MatcherSettings())")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def main() -> None:
    """Run every benchmark and print the figures."""
    medians = {"shipped": bench_base("shipped policies/", SHIPPED, list(SHIPPED_QUESTIONS))}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            folder = Path(tmp) / f"kb{size}"
            made = synthetic_kb.write(folder, size)
            questions = synthetic_questions(made, QUESTIONS_PER_BASE)
            medians[size] = bench_base(f"synthetic {size}", folder, questions)
    for label, which in (("matcher", 0), ("extractOne", 1)):
        growth = medians[10_000][which] / medians[1_000][which]
        print(f"{label} median growth from 1,000 to 10,000 topics: {growth:.1f}x")
    print(f"start-up with the shipped knowledge base: {startup_seconds():.2f} s")


if __name__ == "__main__":
    main()
