"""Match a villager's question to a knowledge-base topic.

The question is normalised (width, traditional characters, punctuation, fillers, numerals),
colloquial variants are replaced by canonical terms from synonyms.toml, and the text is cut
into words with a private jieba tokenizer that knows the knowledge base's terms. Every word is
also turned into toneless "fuzzy" pinyin, so homophone typos (代款 for 贷款) and questions typed
in pinyin land on the same features as the knowledge base text.

Features are words, pinyin syllable pairs and single syllables, weighted by how rare they are
across topics. An inverted index from feature to documents (titles, keywords and example
questions) yields the candidate topics without scanning the whole knowledge base; candidates are
scored by how much of the question their vocabulary explains, by their best document and by
rapidfuzz similarity of pinyin strings. The score (0-100) chooses the band: answer, suggest
("您是不是想问") or unknown.
"""
from __future__ import annotations

import functools
import heapq
import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import cn2an
import jieba
from opencc import OpenCC
from pypinyin import lazy_pinyin
from rapidfuzz import fuzz

from bot.knowledge import KnowledgeBase
from bot.settings import MatcherSettings

Band = Literal["answer", "suggest", "unknown"]

# Long voice transcriptions say what they want early; the cut keeps matching fast.
MAX_INPUT_CHARS = 600
MAX_QUERY_CHARS = 120

# Spoken padding that carries no meaning; longest first so 我想问一下 goes before 问一下.
FILLERS = (
    "麻烦问一下", "麻烦问下", "我想问一下", "我想问下", "我想了解一下", "想问一下", "想问下",
    "请问一下", "打听一下", "请问", "问一下", "你好", "您好", "那个", "这个", "就是说",
    "然后呢", "一下", "嗯", "呃", "哈", "啊", "噻", "嘛", "哦", "呀", "啦", "咧", "嘞",
)

# Function words that say nothing about the topic (kept out of word features).
STOPWORDS = frozenset(
    "的 了 吗 呢 吧 么 是 我 你 他 她 它 我们 你们 他们 咱 咱们 俺 这 那 这种 那种 就 都 也 还 "
    "和 跟 与 或 在 给 把 被 让 对 从 向 到 得 地 着 过 个 些 一 有 没 没有 不 要 想 会 能 可以 "
    "可 吧 啥 什么 怎么 怎样 怎么样 如何 哪 哪些 哪里 谁 为什么 是不是 有没有 能不能 可不可以 "
    "行不行 好不好 多少 几 请 帮 帮我 现在 如今 今年 自己 时候 的话 一些 一点 点 里 上 下 吗 "
    "么子 啥子 莫得 没得 要得 不得 晓得 整 搞 弄 咋 咋样".split()
)
# Toneless pinyin of particles, dropped from questions typed in pinyin.
PINYIN_STOPWORDS = (
    ("shen", "me"), ("zen", "me"), ("zen", "yang"), ("ru", "he"), ("ke", "yi"), ("you", "mei"),
    ("mei", "you"), ("na", "li"), ("duo", "shao"), ("wo", "men"), ("ni", "men"),
    ("de",), ("le",), ("ma",), ("ne",), ("ba",), ("a",), ("ya",), ("la",), ("wo",), ("ni",),
)

# Words that put a question outside this knowledge base (housing, cars, health, schooling,
# civil affairs, weather, small talk). They pull a topic's score down unless that topic's own
# text uses the word.
OUT_OF_SCOPE_CUES = (
    "天气", "下雨", "下雪", "气温", "台风", "房贷", "买房", "二手房", "商品房", "房价", "公积金",
    "车贷", "买车", "驾校", "学车", "驾照", "违章", "上牌", "医保", "新农合", "看病", "医院",
    "挂号", "住院", "生病", "养老保险", "养老金", "幼儿园", "上学", "助学", "高考", "结婚",
    "离婚", "笑话", "你是谁", "你叫", "彩票", "股票",
)
OUT_OF_SCOPE_FACTOR = 0.55

# Standard Mandarin syllables, for splitting pinyin typed without spaces.
SYLLABLES = frozenset("""
a ai an ang ao ba bai ban bang bao bei ben beng bi bian biao bie bin bing bo bu ca cai can
cang cao ce cen ceng cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan
chuang chui chun chuo ci cong cou cu cuan cui cun cuo da dai dan dang dao de dei deng di dia
dian diao die ding diu dong dou du duan dui dun duo e ei en eng er fa fan fang fei fen feng fo
fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai guan guang gui gun guo ha hai han
hang hao he hei hen heng hong hou hu hua huai huan huang hui hun huo ji jia jian jiang jiao jie
jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke ken keng kong kou ku kua kuai kuan
kuang kui kun kuo la lai lan lang lao le lei leng li lia lian liang liao lie lin ling liu long
lou lu luan lue lun luo lv ma mai man mang mao me mei men meng mi mian miao mie min ming miu mo
mou mu na nai nan nang nao ne nei nen neng ni nian niang niao nie nin ning niu nong nou nu nuan
nue nuo nv o ou pa pai pan pang pao pei pen peng pi pian piao pie pin ping po pou pu qi qia qian
qiang qiao qie qin qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong rou ru ruan
rui run ruo sa sai san sang sao se sen seng sha shai shan shang shao she shei shen sheng shi shou
shu shua shuai shuan shuang shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao
te teng ti tian tiao tie ting tong tou tu tuan tui tun tuo wa wai wan wang wei wen weng wo wu xi
xia xian xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang yao ye yi yin ying yo yong
you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan zhang zhao zhe zhen zheng
zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan zui zun zuo
""".split())
MAX_SYLLABLE = 6

# Feature weights by kind: words and syllable pairs carry the meaning, single syllables are
# ambiguous (shi is 是, 十, 事, 市...) and only help pinyin input.
KIND_WEIGHT = {"w": 1.0, "b": 1.0, "u": 0.25}
# Terms the knowledge base names explicitly (titles, keywords) count extra for their topic.
KEYWORD_BOOST = 1.5
# Cap on index postings visited per question, so a feature shared by thousands of documents
# does not make a large knowledge base slow; the rarest features are visited first.
POSTINGS_BUDGET = 6000
MAX_CANDIDATE_TOPICS = 12
# Score shape: evidence saturates (TAU is the weight of roughly two specific words), and the
# share of the question the topic explains scales the result between COVER_FLOOR and 1.
TAU = 4.0
COVER_FLOOR = 0.55
# A runner-up this close means the question is ambiguous: it costs up to this many points.
AMBIGUITY_PENALTY = 12.0

CN_NUMBER = re.compile(
    r"(?:[0-9]+(?:\.[0-9]+)?|[零一二两三四五六七八九十]+)[十百千万亿][零一二两三四五六七八九十百千万亿0-9]*"
)
KEEP = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"^[a-z]+$")
FILLER = re.compile("|".join(sorted(FILLERS, key=len, reverse=True)))

_T2S = OpenCC("t2s")


@dataclass(frozen=True)
class Candidate:
    topic_id: str
    title: str
    score: float


@dataclass(frozen=True)
class Match:
    band: Band
    topic_id: str | None
    score: float
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class _Analysis:
    text: str
    syllables: str
    features: dict[str, float]


@dataclass(frozen=True)
class _Doc:
    topic_id: str
    kind: str  # "title", "keyword" or "example"
    index: int
    syllables: str
    features: frozenset[str]


def normalise(text: str) -> str:
    """Lower-case simplified Chinese without punctuation, emoji, spaces or spoken fillers."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])
    text = _T2S.convert(text).lower()
    text = KEEP.sub("", text)
    text = FILLER.sub("", text)
    return CN_NUMBER.sub(_arabic, text)


def _arabic(m: re.Match[str]) -> str:
    """五万 -> 50000, 2万 -> 20000; leaves words like 十佳 alone (no magnitude after them)."""
    try:
        value = cn2an.cn2an(m.group(0), "smart")
    except (ValueError, KeyError):
        return m.group(0)
    return str(int(value)) if float(value).is_integer() else str(value)


def fuzzy(syllable: str) -> str:
    """Fold the sounds that southern speakers and hasty typists confuse: zh/z, n/l, ing/in..."""
    if syllable[:2] in ("zh", "ch", "sh"):
        syllable = syllable[0] + syllable[2:]
    elif syllable[0] == "n" and len(syllable) > 1:
        syllable = "l" + syllable[1:]
    if syllable.endswith("ng") and syllable[-3] in "aei":
        syllable = syllable[:-1]
    return syllable.replace("v", "u")


def split_pinyin(word: str) -> list[str] | None:
    """Split pinyin typed without spaces into syllables (fewest pieces), or None if it is not."""
    best: list[list[str] | None] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - MAX_SYLLABLE), end):
            head = best[start]
            if head is not None and word[start:end] in SYLLABLES:
                if best[end] is None or len(head) + 1 < len(best[end]):
                    best[end] = head + [word[start:end]]
    return best[-1]


class Matcher:
    """Scores questions against one knowledge base; build once, then call match()."""

    def __init__(self, kb: KnowledgeBase, settings: MatcherSettings,
                 tokenizer: jieba.Tokenizer | None = None) -> None:
        self.kb = kb
        self.settings = settings
        self._synonyms = _synonym_pattern(kb.synonyms)
        self._tokenizer = tokenizer or _new_tokenizer()
        for term in _dictionary_terms(kb, self._synonyms[1]):
            self._tokenizer.add_word(term, freq=20000)
        self._docs: list[_Doc] = []
        # feature -> document numbers; per topic: feature -> number of its documents using it
        self._postings: dict[str, list[int]] = defaultdict(list)
        self._vocab: dict[str, Counter[str]] = {}
        self._keyword_features: dict[str, frozenset[str]] = {}
        self._topic_text: dict[str, str] = {}
        # Documents are stored topic by topic: topic id -> (first, end) document numbers.
        self._doc_range: dict[str, tuple[int, int]] = {}
        for topic in kb.topics.values():
            first = len(self._docs)
            vocab: Counter[str] = Counter()
            texts = []
            named: set[str] = set()
            for kind, index, text in _documents(topic):
                analysis = self._analyse(text)
                features = frozenset(analysis.features)
                texts.append(analysis.text)
                if kind != "example":
                    named.update(features)
                doc = _Doc(topic.id, kind, index, analysis.syllables, features)
                for feature in features:
                    self._postings[feature].append(len(self._docs))
                vocab.update(features)
                self._docs.append(doc)
            self._vocab[topic.id] = vocab
            self._doc_range[topic.id] = (first, len(self._docs))
            self._keyword_features[topic.id] = frozenset(named)
            self._topic_text[topic.id] = "|".join(texts)
        self._postings = dict(self._postings)
        total = len(kb.topics)
        topic_df = Counter(f for vocab in self._vocab.values() for f in vocab)
        # BM25-style inverse document frequency over topics, so words shared by most topics
        # (创业, 政策) weigh almost nothing.
        self._idf = {f: math.log(1 + (total - df + 0.5) / (df + 0.5)) for f, df in topic_df.items()}
        self._unknown_idf = math.log(1 + (total + 0.5) / 1.5)

    def reload(self, kb: KnowledgeBase) -> Matcher:
        """A matcher for an edited knowledge base, reusing this one's jieba dictionary."""
        return Matcher(kb, self.settings, self._tokenizer)

    def match(self, question: str, exclude: tuple[str, int] | None = None) -> Match:
        """Best topics for a question; exclude=(topic_id, example index) leaves one example out."""
        analysis = self._analyse(question)
        if not analysis.features:
            return Match("unknown", None, 0.0, ())
        excluded = self._find_doc(exclude)
        weights = {f: self._weight(f) for f in analysis.features}
        scored = self._score(analysis, weights, self._candidates(weights, excluded), excluded)
        if not scored:
            return Match("unknown", None, 0.0, ())
        ranked = sorted(scored.items(), key=lambda item: item[1], reverse=True)
        top_id, top = ranked[0]
        if len(ranked) > 1 and top > 0:
            # Two topics explaining the question almost equally well: offer, don't answer.
            top -= AMBIGUITY_PENALTY * max(0.0, 1 - (top - ranked[1][1]) / (0.25 * top))
        top = round(max(0.0, min(100.0, top)), 1)
        candidates = [Candidate(top_id, self.kb.topics[top_id].title, top)]
        for topic_id, score in ranked[1:self.settings.max_suggestions]:
            if score >= 0.6 * ranked[0][1] and score > 0:
                candidates.append(Candidate(topic_id, self.kb.topics[topic_id].title,
                                            round(min(score, top), 1)))
        if top >= self.settings.answer_threshold:
            return Match("answer", top_id, top, tuple(candidates))
        band: Band = "suggest" if top >= self.settings.suggest_threshold else "unknown"
        return Match(band, None, top, tuple(candidates))

    def analyse(self, question: str) -> tuple[str, tuple[str, ...]]:
        """The normalised question and its features, for debugging matches."""
        analysis = self._analyse(question)
        return analysis.text, tuple(sorted(analysis.features, key=analysis.features.get, reverse=True))

    def _analyse(self, text: str) -> _Analysis:
        text = normalise(text)
        pattern, canonical = self._synonyms
        if pattern is not None:
            text = pattern.sub(lambda m: canonical[m.group(0)], text)
        text = text[:MAX_QUERY_CHARS]
        features: dict[str, float] = {}
        syllables: list[str] = []
        for word in self._tokenizer.lcut_for_search(text, HMM=False):
            if HAN.match(word):
                if word not in STOPWORDS:
                    features["w" + word] = KIND_WEIGHT["w"]
            elif LATIN.match(word):
                pieces = split_pinyin(word)
                if pieces is None:
                    features["w" + word] = KIND_WEIGHT["w"]
                continue
            elif word.isdigit() or "." in word:
                features["w" + word] = KIND_WEIGHT["w"]
        # Pinyin runs over the plain (non-search) cut so each character is read once.
        for word in self._tokenizer.lcut(text, HMM=False):
            if HAN.match(word):
                if word in STOPWORDS:
                    syllables.append("|")
                else:
                    syllables.extend(fuzzy(s) for s in lazy_pinyin(word))
            elif LATIN.match(word):
                pieces = split_pinyin(word)
                if pieces is not None:
                    syllables.extend(_drop_particles([fuzzy(p) for p in pieces]))
            else:
                syllables.append("|")
        for i, syllable in enumerate(syllables):
            if syllable == "|":
                continue
            features.setdefault("u" + syllable, KIND_WEIGHT["u"])
            if i + 1 < len(syllables) and syllables[i + 1] != "|":
                features.setdefault("b" + syllable + " " + syllables[i + 1], KIND_WEIGHT["b"])
        spoken = " ".join(s for s in syllables if s != "|")
        return _Analysis(text, spoken, features)

    def _weight(self, feature: str) -> float:
        return KIND_WEIGHT[feature[0]] * self._idf.get(feature, self._unknown_idf)

    def _find_doc(self, exclude: tuple[str, int] | None) -> int | None:
        if exclude is None:
            return None
        return next((n for n, d in enumerate(self._docs)
                     if d.kind == "example" and (d.topic_id, d.index) == exclude), None)

    def _candidates(self, weights: dict[str, float], excluded: int | None) -> list[str]:
        """Topics sharing the most weight with the question, via the inverted index."""
        gained: dict[str, float] = defaultdict(float)
        budget = POSTINGS_BUDGET
        for feature in sorted(weights, key=weights.get, reverse=True):
            postings = self._postings.get(feature)
            if not postings:
                continue
            if len(postings) > budget and gained:
                break
            budget -= len(postings)
            seen: set[str] = set()
            for n in postings:
                topic_id = self._docs[n].topic_id
                if n != excluded and topic_id not in seen:
                    seen.add(topic_id)
                    gained[topic_id] += weights[feature]
        return heapq.nlargest(MAX_CANDIDATE_TOPICS, gained, key=gained.get)

    def _score(self, analysis: _Analysis, weights: dict[str, float], topic_ids: list[str],
               excluded: int | None) -> dict[str, float]:
        total = sum(weights.values())
        cues = [cue for cue in OUT_OF_SCOPE_CUES if cue in analysis.text]
        left_out = self._docs[excluded] if excluded is not None else None
        scores = {}
        for topic_id in topic_ids:
            vocab = self._vocab[topic_id]
            removed = left_out.features if left_out and left_out.topic_id == topic_id else frozenset()
            named = self._keyword_features[topic_id]
            evidence = 0.0
            explained = 0.0
            for feature, weight in weights.items():
                if vocab.get(feature, 0) - (feature in removed) > 0:
                    explained += weight
                    evidence += weight * (KEYWORD_BOOST if feature in named else 1.0)
            cover = explained / total
            score = 100 * (1 - math.exp(-evidence / TAU)) * (COVER_FLOOR + (1 - COVER_FLOOR) * cover)
            score = max(score, self._closest_example(analysis, topic_id, excluded))
            if any(cue not in self._topic_text[topic_id] for cue in cues):
                score *= OUT_OF_SCOPE_FACTOR
            scores[topic_id] = score
        return scores

    def _closest_example(self, analysis: _Analysis, topic_id: str, excluded: int | None) -> float:
        """How nearly the question repeats one of the topic's examples, by pinyin (0-100)."""
        best = 0.0
        for n in range(*self._doc_range[topic_id]):
            doc = self._docs[n]
            if n != excluded and doc.kind == "example" and doc.syllables:
                best = max(best, fuzz.ratio(analysis.syllables, doc.syllables))
        # ratio of unrelated sentences is often 40-50; only near-repeats should count.
        return max(0.0, (best - 60) * 2.5)


def _documents(topic) -> list[tuple[str, int, str]]:
    docs = [("title", 0, topic.title)]
    docs += [("keyword", i, k) for i, k in enumerate(topic.keywords)]
    docs += [("example", i, e) for i, e in enumerate(topic.examples)]
    return docs


def _drop_particles(syllables: list[str]) -> list[str]:
    """Remove particles (shenme, ma, de...) from pinyin input, as hanzi input drops 什么, 吗, 的."""
    folded = [tuple(fuzzy(s) for s in words) for words in PINYIN_STOPWORDS]
    out: list[str] = []
    i = 0
    while i < len(syllables):
        for words in folded:
            if tuple(syllables[i:i + len(words)]) == words:
                out.append("|")
                i += len(words)
                break
        else:
            out.append(syllables[i])
            i += 1
    return out


def _synonym_pattern(synonyms: dict[str, str]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """A regex trying longer variants first, and normalised variant -> canonical."""
    canonical = {}
    for variant, term in synonyms.items():
        key = normalise(variant)
        if key and key != normalise(term):
            canonical[key] = normalise(term)
    if not canonical:
        return None, canonical
    return re.compile("|".join(re.escape(v) for v in sorted(canonical, key=len, reverse=True))), canonical


def _dictionary_terms(kb: KnowledgeBase, canonical: dict[str, str]) -> set[str]:
    """Knowledge-base terms jieba should keep whole: keywords, short title parts, synonyms."""
    terms = set(canonical.values())
    for topic in kb.topics.values():
        terms.update(normalise(k) for k in topic.keywords)
        terms.update(normalise(part) for part in re.split(r"[：:，,、（）()\s]+", topic.title))
    return {t for t in terms if 2 <= len(t) <= 8 and HAN.match(t)}


@functools.cache
def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's stock dictionary, read once per process: reading it takes about a second,
    and every knowledge base (and every test app) needs a private copy to add words to."""
    logging.getLogger("jieba").setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


def _new_tokenizer() -> jieba.Tokenizer:
    """A private jieba tokenizer with its own copy of the stock dictionary."""
    freq, total = _base_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(freq), total
    tokenizer.initialized = True
    return tokenizer
