"""Load and validate the policy knowledge base: policies/*.toml -> KnowledgeBase.

One TOML file per category (the file name is the category id), plus synonyms.toml, the
directory of other offices (offices.toml), small talk (small_talk.toml), the overview
for vague questions (overview.toml) and the generic words a topic need not explain
(generic.toml); the format is described in policies/README.md. Loading stops at the first broken file with a
KnowledgeError naming file and line; check_knowledge() lists every problem it can find,
including the content contract of shared/policy-spec.md.
"""
from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.labels import yuan
from bot.settings import CountySettings, LoanSettings, MatcherSettings

CATEGORY_IDS = ("relax", "encourage", "support", "industry", "service")

# The topic ids promised by shared/policy-spec.md: never renamed or dropped.
CONTRACT_IDS = (
    "relax.market-access", "relax.registration", "relax.capital", "relax.premises",
    "relax.scope-name",
    "encourage.cadres", "encourage.returnees", "encourage.rural-talent",
    "encourage.tech-staff", "encourage.private-owners",
    "support.loan", "support.startup-subsidy", "support.tax", "support.land", "support.training",
    "support.service",
    "industry.tea", "industry.vegetables", "industry.livestock",
    "service.apply-training", "service.apply-loan", "service.status", "service.contact",
    "service.announcements", "service.investment", "service.awards", "service.human",
)

SYNONYMS_FILE = "synonyms.toml"
OFFICES_FILE = "offices.toml"
SMALL_TALK_FILE = "small_talk.toml"
OVERVIEW_FILE = "overview.toml"
GENERIC_FILE = "generic.toml"
SMALL_TALK_KINDS = ("greeting", "thanks", "ack", "particles")
PLACEHOLDERS = ("county", "bureau", "address", "hours", "hotline", "loan_ceiling",
                "loan_partnership_ceiling", "loan_term")
# The note that a figure is a demonstration value; one per answer is enough.
SAMPLE_NOTE = re.compile(r"（(?:均为)?示例数字[^）]*）")
DETAIL_FIELDS = ("eligibility", "benefits", "how_to_apply", "documents", "office")
TOPIC_FIELDS = ("title", "answer", "keywords", "examples", "details")
MIN_EXAMPLES = 6
MAX_ANSWER_CHARS = 300
TOPIC_ID = re.compile(r"^[a-z]+\.[a-z0-9-]+$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TOML_LINE = re.compile(r"at line (\d+)")


class KnowledgeError(Exception):
    """A broken knowledge-base file; the message names file and line."""


@dataclass(frozen=True)
class Topic:
    id: str
    category: str
    title: str
    answer: str
    details: dict[str, str]
    keywords: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    order: int
    topic_ids: tuple[str, ...]


@dataclass(frozen=True)
class Overview:
    """The list of money and help shown for vague questions ("有啥补贴")."""
    title: str
    topic_ids: tuple[str, ...]
    words: tuple[str, ...]  # a question made only of these (and particles) is vague


@dataclass(frozen=True)
class KnowledgeBase:
    topics: dict[str, Topic]
    categories: tuple[Category, ...]
    # variant -> canonical term, e.g. "代款" -> "贷款"
    synonyms: dict[str, str]
    source: Path | None = None
    # office key -> words that point a question to that office (offices.toml)
    offices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # words that put a question outside this service with no office to refer to
    no_office_words: tuple[str, ...] = ()
    # kind (greeting, thanks, ack, particles) -> words (small_talk.toml)
    small_talk: dict[str, tuple[str, ...]] = field(default_factory=dict)
    overview: Overview | None = None
    # words that ask (怎么, 多久, 条件) rather than name a subject (generic.toml)
    generic_words: tuple[str, ...] = ()
    # chat abbreviation -> term, e.g. "zm" -> "怎么" (synonyms.toml [abbreviations])
    abbreviations: dict[str, str] = field(default_factory=dict)
    # (file name, mtime_ns, size) of every file read, so reload() can skip unchanged data.
    fingerprint: tuple[tuple[str, int, int], ...] = field(default=(), compare=False)

    def render_answer(self, topic_id: str, values: Mapping[str, str]) -> str:
        """The topic's answer with {county}, {loan_ceiling}, ... filled from configuration
        (see placeholder_values), the sample-figure note kept once."""
        return _one_sample_note([fill_placeholders(self.topics[topic_id].answer, values)])[0]

    def render_details(self, topic_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """The topic's details with placeholders filled, in DETAIL_FIELDS order; shown
        together, so the sample-figure note is kept once across them."""
        details = self.topics[topic_id].details
        filled = _one_sample_note([fill_placeholders(details[key], values) for key in DETAIL_FIELDS])
        return dict(zip(DETAIL_FIELDS, filled))

    def is_stale(self) -> bool:
        """True when a file under source was added, removed or changed since loading."""
        return self.source is not None and _fingerprint(self.source) != self.fingerprint

    def reload(self) -> KnowledgeBase:
        """This knowledge base if its files are unchanged, else a freshly loaded one."""
        if self.source is None or not self.is_stale():
            return self
        return load_knowledge(self.source)


def placeholder_values(county: CountySettings, loan: LoanSettings) -> dict[str, str]:
    """What each {placeholder} of an answer stands for: the county's own facts and the loan
    figures the loan form enforces, so the answers and the form cannot disagree."""
    return {"county": county.name, "bureau": county.bureau, "address": county.address,
            "hours": county.hours, "hotline": county.hotline,
            "loan_ceiling": yuan(loan.ceiling_yuan),
            "loan_partnership_ceiling": yuan(loan.partnership_ceiling_yuan),
            "loan_term": f"{loan.term_years}年"}


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace the known {placeholders}; anything else in braces stays as written."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _one_sample_note(texts: list[str]) -> list[str]:
    """Texts read together, with the sample-figure note only where it first appears."""
    seen = False
    result = []
    for text in texts:
        def keep_first(match: re.Match[str]) -> str:
            nonlocal seen
            if seen:
                return ""
            seen = True
            return match.group(0)
        result.append(SAMPLE_NOTE.sub(keep_first, text))
    return result


def load_knowledge(path: Path) -> KnowledgeBase:
    """Read every policies/*.toml under path; raise KnowledgeError on the first problem."""
    kb, problems = _read(Path(path))
    if len(problems) > 1:
        raise KnowledgeError(f"{problems[0]}（另有 {len(problems) - 1} 个问题，"
                             "运行 python run.py policies check 查看全部）")
    if problems:
        raise KnowledgeError(problems[0])
    return kb


def check_knowledge(path: Path, settings: MatcherSettings,
                    office_keys: typing.Collection[str] | None = None) -> list[str]:
    """Every problem in the knowledge base at path: format, contract ids, confusable examples.

    office_keys: the offices configured in config.toml; each office of offices.toml needs one.
    """
    # Imported here because the matcher itself depends on this module.
    from bot.matching.matcher import Matcher

    path = Path(path)
    kb, problems = _read(path)
    if not path.is_dir():
        return problems
    for topic_id in CONTRACT_IDS:
        if topic_id not in kb.topics:
            problems.append(f"{path}: 缺少规格约定的话题 {topic_id}（见 shared/policy-spec.md）")
    for topic in kb.topics.values():
        if len(topic.answer) > MAX_ANSWER_CHARS:
            problems.append(f"{_where(path, topic)}: 话题 {topic.id} 的 answer 有 "
                            f"{len(topic.answer)} 字，超过一屏（{MAX_ANSWER_CHARS} 字）")
    # With no office configured at all, referrals fall back to the hotline; a partial
    # list is a mistake.
    if office_keys:
        for key in kb.offices:
            if key not in office_keys:
                problems.append(f"{path / OFFICES_FILE}: 部门 {key} 在 config.toml 的 "
                                "[[county.offices]] 中没有名称和电话")
    if kb.overview is not None:
        for topic_id in kb.overview.topic_ids:
            if topic_id not in kb.topics:
                problems.append(f"{path / OVERVIEW_FILE}: 没有话题 {topic_id}")
    if not kb.topics:
        return problems
    matcher = Matcher(kb, settings)
    for topic in kb.topics.values():
        for index, example in enumerate(topic.examples):
            found = matcher.match(example, exclude=(topic.id, index))
            best = found.candidates[0].topic_id if found.candidates else None
            if best != topic.id:
                problems.append(f"{_where(path, topic)}: 话题 {topic.id} 的例句「{example}」"
                                f"更像 {best or '（无匹配）'}")
    return problems


def _read(path: Path) -> tuple[KnowledgeBase, list[str]]:
    """Parse what can be parsed; return the valid topics and every problem found."""
    problems: list[str] = []
    topics: dict[str, Topic] = {}
    categories: list[Category] = []
    synonyms: dict[str, str] = {}
    extras: dict[str, typing.Any] = {}
    seen_in: dict[str, str] = {}  # topic id -> file name
    if not path.is_dir():
        return KnowledgeBase({}, (), {}, path), [f"{path}: 知识库目录不存在"]
    fingerprint = _fingerprint(path)
    for file in sorted(path.glob("*.toml")):
        try:
            text = file.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except UnicodeDecodeError:
            problems.append(f"{file}:1: 文件不是 UTF-8 编码")
            continue
        except tomllib.TOMLDecodeError as exc:
            line = TOML_LINE.search(str(exc))
            problems.append(f"{file}:{line.group(1) if line else 1}: TOML 格式错误: {exc}")
            continue
        source = _Source(file, text.splitlines())
        if file.name == SYNONYMS_FILE:
            _read_synonyms(source, data, synonyms, problems)
            extras["abbreviations"] = _read_abbreviations(source, data, problems)
            continue
        if file.name == OFFICES_FILE:
            extras["offices"], extras["no_office_words"] = _read_offices(source, data, problems)
            continue
        if file.name == SMALL_TALK_FILE:
            extras["small_talk"] = _read_word_lists(source, data, SMALL_TALK_KINDS, problems)
            continue
        if file.name == OVERVIEW_FILE:
            extras["overview"] = _read_overview(source, data, problems)
            continue
        if file.name == GENERIC_FILE:
            extras["generic_words"] = _read_word_lists(source, data, ("words",), problems).get("words", ())
            continue
        if file.stem not in CATEGORY_IDS:
            problems.append(f"{file}:1: 未知分类 {file.stem}，文件名应为 "
                            f"{', '.join(CATEGORY_IDS)} 之一（或 {SYNONYMS_FILE}、{OFFICES_FILE}、"
                            f"{SMALL_TALK_FILE}、{OVERVIEW_FILE}、{GENERIC_FILE}）")
            continue
        category = _read_category(source, data, problems)
        for topic in _read_topics(source, data, problems, seen_in):
            topics[topic.id] = topic
            category = Category(category.id, category.title, category.order,
                                category.topic_ids + (topic.id,))
        categories.append(category)
    categories.sort(key=lambda c: (c.order, c.id))
    kb = KnowledgeBase(topics, tuple(categories), synonyms, path, fingerprint=fingerprint, **extras)
    return kb, problems


@dataclass(frozen=True)
class _Source:
    """A file's name and lines, to point messages at the right line."""

    file: Path
    lines: list[str]

    def at(self, topic_id: str | None = None, key: str | None = None) -> str:
        """'file:line' of a topic's table header, of a key inside it, or of a top-level key."""
        start = 0
        if topic_id is not None:
            quoted = re.escape(topic_id)
            header = re.compile(rf"""^\s*\[\s*topics\s*\.\s*("{quoted}"|'{quoted}'|{quoted})\s*\]""")
            start = next((i for i, line in enumerate(self.lines) if header.match(line)),
                         next((i for i, line in enumerate(self.lines) if topic_id in line), 0))
        if key is not None:
            assignment = re.compile(rf"""^\s*("?){re.escape(key)}\1\s*=""")
            for i in range(start, len(self.lines)):
                line = self.lines[i].lstrip()
                # Stop at the next table unless it is this topic's own [topics."id".details].
                if i > start and line.startswith("[") and (topic_id is None or topic_id not in line):
                    break
                if assignment.match(self.lines[i]):
                    return f"{self.file}:{i + 1}"
        return f"{self.file}:{start + 1}"


def _read_category(source: _Source, data: dict[str, typing.Any], problems: list[str]) -> Category:
    title = data.get("title")
    order = data.get("order")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{source.at(key='title')}: 缺少分类标题 title（字符串）")
        title = source.file.stem
    if isinstance(order, bool) or not isinstance(order, int):
        problems.append(f"{source.at(key='order')}: 缺少菜单顺序 order（整数）")
        order = len(CATEGORY_IDS)
    for key in data:
        if key not in ("title", "order", "topics"):
            problems.append(f"{source.at(key=key)}: 未知字段 {key}")
    return Category(source.file.stem, title, order, ())


def _read_topics(source: _Source, data: dict[str, typing.Any], problems: list[str],
                 seen_in: dict[str, str]) -> list[Topic]:
    """The valid topics of one category file; seen_in maps ids to the file defining them."""
    category = source.file.stem
    tables = data.get("topics", {})
    if not isinstance(tables, dict):
        problems.append(f"{source.at(key='topics')}: topics 应为表")
        return []
    topics = []
    for topic_id, raw in tables.items():
        where = source.at(topic_id)
        if not TOPIC_ID.match(topic_id):
            problems.append(f"{where}: 话题 id {topic_id!r} 不合格式（应形如 support.loan）")
            continue
        if topic_id in seen_in:
            problems.append(f"{where}: 话题 id {topic_id} 重复（已在 {seen_in[topic_id]} 中定义）")
            continue
        seen_in[topic_id] = source.file.name
        if topic_id.split(".")[0] != category:
            problems.append(f"{where}: 话题 {topic_id} 的前缀应为分类名 {category}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: 话题 {topic_id} 应为表")
            continue
        before = len(problems)
        topic = _read_topic(source, topic_id, raw, problems)
        if len(problems) == before:
            topics.append(topic)
    return topics


def _read_topic(source: _Source, topic_id: str, raw: dict[str, typing.Any],
                problems: list[str]) -> Topic:
    def fail(key: str | None, message: str) -> None:
        problems.append(f"{source.at(topic_id, key)}: 话题 {topic_id}: {message}")

    for key in raw:
        if key not in TOPIC_FIELDS:
            fail(key, f"未知字段 {key}")
    texts: dict[str, str] = {}
    for key in ("title", "answer"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            fail(key if key in raw else None, f"缺少 {key}（非空字符串）")
        else:
            texts[key] = value.strip()
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("keywords", "examples"):
        value = raw.get(key)
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v.strip() for v in value)):
            fail(key if key in raw else None, f"缺少 {key}（非空字符串列表）")
            value = []
        lists[key] = tuple(v.strip() for v in value)
    if lists["examples"] and len(lists["examples"]) < MIN_EXAMPLES:
        fail("examples", f"例句只有 {len(lists['examples'])} 条，至少需要 {MIN_EXAMPLES} 条")
    details = raw.get("details")
    if not isinstance(details, dict):
        fail(None, "缺少 details 表（" + "、".join(DETAIL_FIELDS) + "）")
        details = {}
    for key in DETAIL_FIELDS:
        value = details.get(key)
        if details and (not isinstance(value, str) or not value.strip()):
            fail(key if key in details else None, f"details 缺少 {key}（非空字符串）")
    for key in details:
        if key not in DETAIL_FIELDS:
            fail(key, f"details 中有未知字段 {key}")
    for key, text in [*texts.items(), *((k, v) for k, v in details.items() if isinstance(v, str))]:
        for name in PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                fail(key, f"{key} 中有未知占位符 {{{name}}}（可用: "
                          + "、".join("{" + p + "}" for p in PLACEHOLDERS) + "）")
    return Topic(
        id=topic_id,
        category=source.file.stem,
        title=texts.get("title", ""),
        answer=texts.get("answer", ""),
        details={k: v.strip() for k, v in details.items() if isinstance(v, str)},
        keywords=lists["keywords"],
        examples=lists["examples"],
    )


def _read_synonyms(source: _Source, data: dict[str, typing.Any], synonyms: dict[str, str],
                   problems: list[str]) -> None:
    table = data.get("synonyms")
    if not isinstance(table, dict):
        problems.append(f"{source.at(key='synonyms')}: 缺少 [synonyms] 表")
        return
    for key in data:
        if key not in ("synonyms", "abbreviations"):
            problems.append(f"{source.at(key=key)}: 未知字段 {key}")
    for canonical, variants in table.items():
        if not isinstance(variants, list) or not all(isinstance(v, str) and v.strip() for v in variants):
            problems.append(f"{source.at(key=canonical)}: 同义词 {canonical} 应对应非空字符串列表")
            continue
        for variant in variants:
            variant = variant.strip()
            if variant == canonical:
                continue
            if synonyms.get(variant, canonical) != canonical:
                problems.append(f"{source.at(key=canonical)}: 「{variant}」同时是 "
                                f"{synonyms[variant]} 和 {canonical} 的同义词")
                continue
            synonyms[variant] = canonical


def _read_abbreviations(source: _Source, data: dict[str, typing.Any],
                        problems: list[str]) -> dict[str, str]:
    """[abbreviations]: letters people type for a word (zm = 怎么), lower-case a-z only."""
    table = data.get("abbreviations", {})
    if not isinstance(table, dict):
        problems.append(f"{source.at(key='abbreviations')}: abbreviations 应为表")
        return {}
    out = {}
    for short, term in table.items():
        if not re.fullmatch(r"[a-z]{1,8}", short) or not isinstance(term, str) or not term.strip():
            problems.append(f"{source.at(key=short)}: 缩写 {short} 应为小写字母，对应一个非空词")
            continue
        out[short] = term.strip()
    return out


def _words(source: _Source, value: typing.Any, key: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{source.at(key=key)}: {key} 应为非空字符串列表")
        return ()
    return tuple(v.strip() for v in value)


def _read_offices(source: _Source, data: dict[str, typing.Any],
                  problems: list[str]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """[offices.KEY] words = [...] and [no_office] words = [...]."""
    for key in data:
        if key not in ("offices", "no_office"):
            problems.append(f"{source.at(key=key)}: 未知字段 {key}")
    offices: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    tables = data.get("offices", {})
    if not isinstance(tables, dict):
        problems.append(f"{source.at(key='offices')}: offices 应为表")
        tables = {}
    for office, table in tables.items():
        if not isinstance(table, dict) or set(table) != {"words"}:
            problems.append(f"{source.at(key='words')}: 部门 {office} 应只有 words 列表")
            continue
        words = _words(source, table["words"], "words", problems)
        for word in words:
            if owner.setdefault(word, office) != office:
                problems.append(f"{source.at(key='words')}: 「{word}」同时指向部门 "
                                f"{owner[word]} 和 {office}")
        offices[office] = words
    no_office = data.get("no_office", {"words": []})
    words = _words(source, no_office.get("words") if isinstance(no_office, dict) else None,
                   "words", problems) if no_office.get("words") else ()
    return offices, words


def _read_word_lists(source: _Source, data: dict[str, typing.Any], kinds: tuple[str, ...],
                     problems: list[str]) -> dict[str, tuple[str, ...]]:
    out = {}
    for key, value in data.items():
        if key not in kinds:
            problems.append(f"{source.at(key=key)}: 未知字段 {key}（可用：{'、'.join(kinds)}）")
            continue
        out[key] = _words(source, value, key, problems)
    return out


def _read_overview(source: _Source, data: dict[str, typing.Any], problems: list[str]) -> Overview | None:
    for key in data:
        if key not in ("title", "topics", "words"):
            problems.append(f"{source.at(key=key)}: 未知字段 {key}")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{source.at(key='title')}: 缺少 title（字符串）")
        return None
    topics = _words(source, data.get("topics"), "topics", problems)
    words = _words(source, data.get("words"), "words", problems)
    return Overview(title.strip(), topics, words) if topics else None


def _where(path: Path, topic: Topic) -> str:
    """'file:line' of a topic in an already loaded knowledge base."""
    file = path / f"{topic.category}.toml"
    try:
        return _Source(file, file.read_text(encoding="utf-8").splitlines()).at(topic.id)
    except OSError:
        return str(file)


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        stats = [(f.name, f.stat()) for f in sorted(path.glob("*.toml"))]
    except OSError:
        return ()
    return tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats)
