"""Match a villager's question to a knowledge-base topic.

The question is normalised (width, traditional characters, punctuation, fillers, numerals),
colloquial variants are replaced by canonical terms from synonyms.toml, and the text is cut
into words with a private jieba tokenizer that knows the knowledge base's terms. Every word is
also turned into toneless "fuzzy" pinyin, so homophone typos (代款 for 贷款) and questions typed
in pinyin land on the same features as the knowledge base text.

A speller replaces homophone typos and typed pinyin with the knowledge-base term they sound
like (营页执照 -> 营业执照, daikuan -> 贷款). Features are words, pinyin syllable pairs and single
syllables, weighted by how rare they are across topics. An inverted index from feature to
topics yields a few candidates without scanning the whole knowledge base; each is scored by
how much weight its titles, keywords and examples share with the question, by the share of
the question they explain, and by rapidfuzz similarity of the pinyin to its closest example.
The score (0-100) chooses the band: answer, suggest ("您是不是想问") or unknown.
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
from rapidfuzz import fuzz, process

from bot.knowledge import KnowledgeBase, Topic
from bot.settings import MatcherSettings

Band = Literal["answer", "suggest", "unknown"]

# Long voice transcriptions say what they want early; the cut keeps matching fast.
MAX_INPUT_CHARS = 600
MAX_QUERY_CHARS = 200

# Spoken padding that carries no meaning; longest first so 我想问一下 goes before 问一下.
FILLERS = (
    "麻烦问一下", "麻烦问下", "我想问一下", "我想问下", "我想了解一下", "想问一下", "想问下",
    "请问一下", "打听一下", "请问", "问一下", "你好", "您好", "那个", "这个", "就是说",
    "然后呢", "一下", "嗯", "呃", "哈", "啊", "噻", "嘛", "哦", "呀", "啦", "咧", "嘞",
)

# Particles and pronouns that say nothing about the topic (kept out of word features).
# Question words (哪里, 多少, 怎么) stay: inverse topic frequency already makes them cheap,
# and for some topics (where is the office, how much can I borrow) they are the point.
STOPWORDS = frozenset(
    "的 了 吗 呢 吧 么 是 我 你 他 她 它 我们 你们 他们 咱 咱们 俺 这 那 就 都 也 还 和 跟 与 或 "
    "在 给 把 被 让 对 从 向 到 得 地 着 过 个 些 一 不 没".split()
)
# Toneless pinyin of particles, dropped from questions typed in pinyin.
PINYIN_STOPWORDS = (
    ("shen", "me"), ("zen", "me"), ("zen", "yang"), ("ru", "he"), ("ke", "yi"), ("you", "mei"),
    ("mei", "you"), ("na", "li"), ("duo", "shao"), ("wo", "men"), ("ni", "men"),
    ("de",), ("le",), ("ma",), ("ne",), ("ba",), ("a",), ("ya",), ("la",), ("wo",), ("ni",),
)

# Words that put a question outside this knowledge base: other government services and
# everyday topics villagers also ask about. They pull a topic's score down unless that
# topic's own text uses the word.
OUT_OF_SCOPE_CUES = (
    # weather
    "天气", "下雨", "下雪", "气温", "降温", "台风",
    # housing and vehicles
    "房贷", "买房", "二手房", "商品房", "房价", "公积金", "车贷", "买车", "驾校", "学车", "驾照",
    "违章", "上牌", "过户",
    # health, pensions and welfare
    "医保", "新农合", "医疗", "看病", "医院", "挂号", "住院", "生病", "感冒", "疫苗",
    "养老保险", "养老金", "退休金", "低保", "五保",
    # schooling
    "幼儿园", "上学", "小学", "中学", "高考", "中考", "助学", "转学",
    # civil affairs and lost documents
    "结婚", "离婚", "户口迁", "补办", "挂失",
    # phones, money games, small talk
    "话费", "流量", "信号", "彩票", "股票", "笑话", "你是谁", "你叫", "唱歌",
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
# Weight of a feature that only one example uses (reaches 1 at three examples).
EXAMPLE_STRENGTH = 0.6
# Cap on index postings visited per question, so a feature shared by thousands of topics
# does not make a large knowledge base slow; the rarest features are visited first.
POSTINGS_BUDGET = 6000
MAX_CANDIDATE_TOPICS = 12
# Score shape: evidence saturates (TAU is the weight of roughly two specific words), and the
# share of the question the topic explains scales the result between COVER_FLOOR and 1.
TAU = 5.0
COVER_FLOOR = 0.7
# Pinyin similarity (0-100) from which a question counts as repeating an example.
NEAR_REPEAT = 60

CN_NUMBER = re.compile(
    r"(?:[0-9]+(?:\.[0-9]+)?|[零一二两三四五六七八九十]+)[十百千万亿][零一二两三四五六七八九十百千万亿0-9]*"
)
# "A-not-A" questions (要不要, 有没有, 允不允许) ask the same as the plain verb.
A_NOT_A = re.compile(r"([\u4e00-\u9fff])[不没]\1")
KEEP = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"^[a-z]+$")
# Phrases such as 教什么 or 贷多少 are keywords but not words: a typo of them is too likely
# to be a different question (你叫什么 is not 你教什么), so the speller leaves them out.
QUESTION_WORD = re.compile("什么|怎么|多少|哪|谁|几|啥|吗|呢|不|没")
RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[a-z]+|[^a-z\u3400-\u4dbf\u4e00-\u9fff]+")
# Longest knowledge-base term the speller and the jieba dictionary deal with.
MAX_TERM = 6
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
    syllables: str  # fuzzy pinyin, space-separated, for rapidfuzz
    features: frozenset[str]  # kind letter (KIND_WEIGHT) + word or pinyin


@dataclass(frozen=True)
class _Doc:
    topic_id: str
    kind: str  # "title", "keyword" or "example"
    index: int
    syllables: str
    features: frozenset[str]


def normalise(text: str) -> str:
    """Lower-case simplified Chinese without punctuation, emoji, spaces, fillers or A-not-A."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])
    text = _T2S.convert(text).lower()
    text = KEEP.sub("", text)
    text = FILLER.sub("", text)
    text = A_NOT_A.sub(r"\1", text)
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
    if syllable == "shei":  # 谁: pypinyin reads shui, people type shei
        return "sui"
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
        self._sound_cache: dict[str, tuple[str, ...]] = {}
        self._synonyms = _synonym_pattern(kb.synonyms)
        self._tokenizer = tokenizer or _new_tokenizer()
        for term in _dictionary_terms(kb, self._synonyms[1]):
            self._tokenizer.add_word(term, freq=20000)
        prepared = {topic.id: [(kind, index, self._replace_synonyms(normalise(text)))
                               for kind, index, text in _documents(topic)]
                    for topic in kb.topics.values()}
        # Cuts of the prepared texts, reused below for texts the speller leaves unchanged.
        cuts = {text: self._tokenizer.lcut(text, HMM=False)
                for docs in prepared.values() for _, _, text in docs}
        vocabulary = {word for words in cuts.values() for word in [*words, *self._parts(words)]
                      if HAN.match(word) and 2 <= len(word) <= MAX_TERM and word not in STOPWORDS}
        self._speller = _Speller(vocabulary, self._synonyms[1], self._tokenizer.FREQ)
        self._docs: list[_Doc] = []
        # feature -> number of documents using it; per topic: feature -> its documents using it
        self._doc_count: Counter[str] = Counter()
        self._vocab: dict[str, Counter[str]] = {}
        self._keyword_features: dict[str, frozenset[str]] = {}
        self._topic_text: dict[str, str] = {}
        # Documents are stored topic by topic: topic id -> (first, end) document numbers.
        self._doc_range: dict[str, tuple[int, int]] = {}
        # topic id -> (document number, pinyin) of its examples, for near-repeat scoring
        self._example_sounds: dict[str, list[tuple[int, str]]] = {}
        self._sounds_only: dict[str, list[str]] = {}
        # topic id -> feature -> (evidence, explained) factors, computed once: scoring a
        # question is then a set intersection and a few multiplications per topic.
        self._factors: dict[str, dict[str, tuple[float, float]]] = {}
        for topic in kb.topics.values():
            first = len(self._docs)
            vocab: Counter[str] = Counter()
            texts = []
            named: set[str] = set()
            for kind, index, text in prepared[topic.id]:
                corrected = self._speller.correct(text)
                analysis = self._analyse(corrected, words=cuts.get(corrected))
                features = analysis.features
                texts.append(analysis.text)
                if kind != "example":
                    named.update(features)
                self._docs.append(_Doc(topic.id, kind, index, analysis.syllables, features))
                self._doc_count.update(features)
                vocab.update(features)
            self._vocab[topic.id] = vocab
            self._doc_range[topic.id] = (first, len(self._docs))
            self._example_sounds[topic.id] = [
                (n, self._docs[n].syllables) for n in range(first, len(self._docs))
                if self._docs[n].kind == "example" and self._docs[n].syllables]
            self._keyword_features[topic.id] = frozenset(named)
            self._topic_text[topic.id] = "|".join(texts)
            self._factors[topic.id] = _factors(vocab, self._keyword_features[topic.id], frozenset())
            self._sounds_only[topic.id] = [sound for _, sound in self._example_sounds[topic.id]]
        # The inverted index: feature -> topics whose documents use it.
        self._postings: dict[str, list[str]] = defaultdict(list)
        for topic_id, vocab in self._vocab.items():
            for feature in vocab:
                self._postings[feature].append(topic_id)
        self._postings = dict(self._postings)
        total = len(kb.topics)
        topic_df = {f: len(topics) for f, topics in self._postings.items()}
        # BM25-style inverse document frequency over topics, so words shared by most topics
        # (创业, 政策) weigh almost nothing.
        self._idf = {f: math.log(1 + (total - df + 0.5) / (df + 0.5)) for f, df in topic_df.items()}
        self._unknown_idf = math.log(1 + (total + 0.5) / 1.5)
        self._order = {topic_id: n for n, topic_id in enumerate(kb.topics)}
        # Matches are immutable, so a repeated question can share the earlier answer.
        self._remembered = functools.lru_cache(maxsize=settings.cache_size)(self._match) \
            if settings.cache_size else self._match

    def reload(self, kb: KnowledgeBase) -> Matcher:
        """A matcher for an edited knowledge base that reuses this one's jieba dictionary (~1 s)."""
        return Matcher(kb, self.settings, self._tokenizer)

    def match(self, question: str, exclude: tuple[str, int] | None = None) -> Match:
        """Best topics for a question; exclude=(topic_id, example index) leaves one example out."""
        # Only short questions are remembered: they are the ones that repeat, and the cache
        # must stay small even when someone sends thousands of long unique texts.
        if exclude is None and len(question) <= MAX_QUERY_CHARS:
            return self._remembered(question)
        return self._match(question, exclude)

    def _match(self, question: str, exclude: tuple[str, int] | None = None) -> Match:
        text = self._replace_synonyms(normalise(question))[:MAX_QUERY_CHARS]
        analysis = self._analyse(self._speller.correct(text), self._idf)
        if not analysis.features:
            return Match("unknown", None, 0.0, ())
        excluded = self._find_doc(exclude)
        weights = {f: self._weight(f, excluded) for f in analysis.features}
        # Cues are looked up before spelling correction, which may turn 你叫 into 你教.
        cues = [cue for cue in OUT_OF_SCOPE_CUES if cue in text or cue in analysis.text]
        scored = self._score(analysis, weights, self._candidates(weights, excluded), excluded, cues)
        if not scored:
            return Match("unknown", None, 0.0, ())
        # Ties go to the topic listed first in the knowledge base, the same in every process.
        ranked = sorted(scored.items(), key=lambda item: (-item[1], self._order[item[0]]))
        top_id, top = ranked[0]
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

    def _replace_synonyms(self, text: str) -> str:
        pattern, canonical = self._synonyms
        return text if pattern is None else pattern.sub(lambda m: canonical[m.group(0)], text)

    def _analyse(self, text: str, known: dict[str, float] | None = None,
                 words: list[str] | None = None) -> _Analysis:
        """Features of a prepared text: words, fuzzy-pinyin syllable pairs and syllables."""
        features: set[str] = set()
        syllables: list[str] = []
        if words is None:
            words = self._tokenizer.lcut(text, HMM=False)
        for word in words:
            if word not in STOPWORDS and not (LATIN.match(word) and split_pinyin(word)):
                features.add("w" + word)
        for part in self._parts(words):
            # Parts of long words (合作社 in 专业合作社) help only when the knowledge base
            # uses them; unknown parts would just dilute the question.
            if part not in STOPWORDS and (known is None or "w" + part in known):
                features.add("w" + part)
        for word in words:
            if HAN.match(word):
                if word in STOPWORDS:
                    syllables.append("|")
                else:
                    syllables.extend(self._sounds(word))
            elif LATIN.match(word):
                pieces = split_pinyin(word)
                if pieces is not None:
                    syllables.extend(_drop_particles(pieces))
            else:
                syllables.append("|")
        for i, syllable in enumerate(syllables):
            if syllable == "|":
                continue
            features.add("u" + syllable)
            if i + 1 < len(syllables) and syllables[i + 1] != "|":
                features.add("b" + syllable + " " + syllables[i + 1])
        spoken = " ".join(s for s in syllables if s != "|")
        return _Analysis(text, spoken, frozenset(features))

    def _parts(self, words: list[str]) -> list[str]:
        """Dictionary words inside longer words, as jieba's search mode finds them."""
        known = self._tokenizer.FREQ
        parts = []
        for word in words:
            if len(word) > 2 and HAN.match(word):
                for size in (2, 3):
                    parts += [word[i:i + size] for i in range(len(word) - size + 1)
                              if size < len(word) and known.get(word[i:i + size])]
        return parts

    def _sounds(self, word: str) -> tuple[str, ...]:
        """Fuzzy toneless pinyin of a word, read as a phrase (cached: words repeat a lot)."""
        sounds = self._sound_cache.get(word)
        if sounds is None:
            sounds = self._sound_cache[word] = tuple(fuzzy(s) for s in lazy_pinyin(word))
        return sounds

    def _weight(self, feature: str, excluded: int | None = None) -> float:
        idf = self._idf.get(feature, self._unknown_idf)
        if (excluded is not None and self._doc_count.get(feature) == 1
                and feature in self._docs[excluded].features):
            idf = self._unknown_idf  # only the left-out example knew this feature
        return KIND_WEIGHT[feature[0]] * idf

    def _find_doc(self, exclude: tuple[str, int] | None) -> int | None:
        if exclude is None:
            return None
        return next((n for n, d in enumerate(self._docs)
                     if d.kind == "example" and (d.topic_id, d.index) == exclude), None)

    def _candidates(self, weights: dict[str, float], excluded: int | None) -> list[str]:
        """Topics sharing the most weight with the question, via the inverted index."""
        gained: dict[str, float] = defaultdict(float)
        left_out = self._docs[excluded] if excluded is not None else None
        budget = POSTINGS_BUDGET
        for feature in sorted(weights, key=lambda f: (-weights[f], f)):
            postings = self._postings.get(feature)
            if not postings:
                continue
            # Single syllables only help when nothing better matched (pinyin fragments).
            if gained and (len(postings) > budget or feature[0] == "u"):
                break
            budget -= len(postings)
            weight = weights[feature]
            for topic_id in postings:
                gained[topic_id] += weight
            if left_out and feature in left_out.features and self._vocab[left_out.topic_id][feature] == 1:
                gained[left_out.topic_id] -= weight
        return heapq.nsmallest(MAX_CANDIDATE_TOPICS, gained,
                               key=lambda t: (-gained[t], self._order[t]))

    def _score(self, analysis: _Analysis, weights: dict[str, float], topic_ids: list[str],
               excluded: int | None, cues: list[str]) -> dict[str, float]:
        total = sum(weights.values())
        left_out = self._docs[excluded] if excluded is not None else None
        scores = {}
        for topic_id in topic_ids:
            factors = self._factors[topic_id]
            if left_out is not None and left_out.topic_id == topic_id:
                factors = _factors(self._vocab[topic_id], self._keyword_features[topic_id],
                                   left_out.features)
            evidence = 0.0
            explained = 0.0
            for feature in weights.keys() & factors.keys():
                weight = weights[feature]
                for_evidence, for_cover = factors[feature]
                evidence += weight * for_evidence
                explained += weight * for_cover
            score = max(_combine(evidence, explained / total),
                        self._closest_example(analysis, topic_id, excluded))
            if any(cue not in self._topic_text[topic_id] for cue in cues):
                score *= OUT_OF_SCOPE_FACTOR
            scores[topic_id] = score
        return scores

    def _closest_example(self, analysis: _Analysis, topic_id: str, excluded: int | None) -> float:
        """How nearly the question repeats one of the topic's examples, by pinyin (0-100)."""
        # ratio of unrelated sentences is often 40-50; only near-repeats should count.
        found = process.extractOne(
            analysis.syllables,
            self._sounds_only[topic_id] if excluded is None else
            [sound for n, sound in self._example_sounds[topic_id] if n != excluded],
            scorer=fuzz.ratio, score_cutoff=NEAR_REPEAT)
        return (found[1] - NEAR_REPEAT) * 2.5 if found else 0.0


def _factors(vocab: Counter[str], named: frozenset[str],
             removed: frozenset[str]) -> dict[str, tuple[float, float]]:
    """Per feature of a topic: what a unit of its weight adds to evidence and to cover.

    Terms the topic names count KEYWORD_BOOST as evidence; a word in one example may be
    incidental, in several it is the topic's. removed: a left-out example's features.
    """
    factors = {}
    for feature, uses in vocab.items():
        uses -= feature in removed
        if uses <= 0:
            continue
        if feature in named:
            factors[feature] = (KEYWORD_BOOST, 1.0)
        else:
            strength = min(1.0, EXAMPLE_STRENGTH + (1 - EXAMPLE_STRENGTH) * (uses - 1) / 2)
            factors[feature] = (strength, strength)
    return factors


def _combine(evidence: float, cover: float) -> float:
    """Score 0-100 from the weight a topic matched and the share of the question it explains."""
    return 100 * (1 - math.exp(-evidence / TAU)) * (COVER_FLOOR + (1 - COVER_FLOOR) * cover)


class _Speller:
    """Replaces homophone typos and typed pinyin with knowledge-base terms.

    营页执照 -> 营业执照 and daikuan -> 贷款, so a typo or pinyin question gains the word
    features of the term it means, not just its pinyin.
    """

    def __init__(self, vocabulary: set[str], synonyms: dict[str, str], words: dict[str, int]) -> None:
        replacements = {word: word for word in vocabulary}
        replacements.update((v, c) for v, c in synonyms.items() if HAN.match(v) and len(v) >= 2)
        self._words = words
        self._char_sounds: dict[str, str] = {}
        # Pinyin -> replacement; None where two different terms sound alike. Typed hanzi are
        # compared by each character's own reading (exact), typed pinyin by the term's
        # reading as a phrase with fuzzy initials and finals.
        self._exact: dict[tuple[str, ...], str | None] = {}
        self._fuzzy: dict[tuple[str, ...], str | None] = {}
        for term, target in sorted(replacements.items()):
            if not all(HAN.match(c) for c in term) or len(term) > MAX_TERM or QUESTION_WORD.search(term):
                continue
            exact = tuple(self._sound(c) for c in term)
            spoken = tuple(fuzzy(s) for s in lazy_pinyin(term))
            for table, key in ((self._exact, exact), (self._fuzzy, spoken)):
                table[key] = target if table.get(key, target) == target else None

    def correct(self, text: str) -> str:
        """The text with typo'd words and pinyin runs replaced where a term sounds the same."""
        out = []
        for run in RUNS.findall(text):
            if HAN.match(run):
                out.append(self._correct_hanzi(run))
            elif LATIN.match(run):
                out.append(self._correct_pinyin(run))
            else:
                out.append(run)
        return "".join(out)

    def _sound(self, char: str) -> str:
        sound = self._char_sounds.get(char)
        if sound is None:
            sound = self._char_sounds[char] = lazy_pinyin(char)[0]
        return sound

    def _correct_hanzi(self, run: str) -> str:
        sounds = [self._sound(c) for c in run]
        out = []
        i = 0
        while i < len(run):
            for size in range(min(MAX_TERM, len(run) - i), 1, -1):
                window = run[i:i + size]
                target = self._exact.get(tuple(sounds[i:i + size]))
                if target == window:
                    break
                # A real word is not a typo; a typo keeps most of its characters.
                if (target and not self._words.get(window)
                        and sum(a != b for a, b in zip(window, target)) <= max(1, size // 2)):
                    break
            else:
                out.append(run[i])
                i += 1
                continue
            out.append(target)
            i += size
        return "".join(out)

    def _correct_pinyin(self, run: str) -> str:
        pieces = split_pinyin(run)
        if pieces is None:
            return run
        keys = [fuzzy(p) for p in pieces]
        out = []
        i = 0
        while i < len(pieces):
            for size in range(min(MAX_TERM, len(pieces) - i), 1, -1):
                target = self._fuzzy.get(tuple(keys[i:i + size]))
                if target:
                    out.append(target)
                    i += size
                    break
            else:
                # Leftover syllables stay pinyin; neighbouring ones stay joined for re-splitting.
                if out and LATIN.match(out[-1]):
                    out[-1] += pieces[i]
                else:
                    out.append(pieces[i])
                i += 1
        return "".join(out)


def _documents(topic: Topic) -> list[tuple[str, int, str]]:
    """(kind, index, text) of a topic's title, keywords and examples."""
    docs = [("title", 0, topic.title)]
    docs += [("keyword", i, k) for i, k in enumerate(topic.keywords)]
    docs += [("example", i, e) for i, e in enumerate(topic.examples)]
    return docs


def _drop_particles(syllables: list[str]) -> list[str]:
    """Remove particles (shenme, ma, de...) from pinyin input, as hanzi input drops 什么, 吗, 的."""
    out: list[str] = []
    i = 0
    while i < len(syllables):
        for words in PINYIN_STOPWORDS:
            if tuple(syllables[i:i + len(words)]) == words:
                out.append("|")
                i += len(words)
                break
        else:
            out.append(fuzzy(syllables[i]))
            i += 1
    return out


def _synonym_pattern(synonyms: dict[str, str]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """A regex trying longer variants first, and normalised variant -> canonical."""
    # Canonical terms map to themselves so that a variant inside one (执照 in 营业执照)
    # is not replaced again: the longer canonical term wins the match.
    canonical = {normalise(term): normalise(term) for term in synonyms.values()}
    for variant, term in synonyms.items():
        if A_NOT_A.search(variant):
            continue  # 能不能 is already reduced to 能, which must not become a variant
        key = normalise(variant)
        if key and key not in canonical:
            canonical[key] = normalise(term)
    canonical = {k: v for k, v in canonical.items() if k}
    if not canonical:
        return None, canonical
    return re.compile("|".join(re.escape(v) for v in sorted(canonical, key=len, reverse=True))), canonical


def _dictionary_terms(kb: KnowledgeBase, canonical: dict[str, str]) -> set[str]:
    """Knowledge-base terms jieba should keep whole: keywords, short title parts, synonyms."""
    terms = set(canonical.values())
    for topic in kb.topics.values():
        terms.update(normalise(k) for k in topic.keywords)
        terms.update(normalise(part) for part in re.split(r"[：:，,、（）()\s]+", topic.title))
    return {t for t in terms if 2 <= len(t) <= MAX_TERM and HAN.match(t)}


@functools.cache
def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's stock dictionary, read once per process: reading it takes about a second,
    and every knowledge base (and every test app) needs a private copy to add words to."""
    logging.getLogger("jieba").setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    # Parsed directly: initialize() keeps a cache file in the shared /tmp, which any local
    # user can replace, and loading it is no faster than parsing (0.7 s either way).
    return tokenizer.gen_pfdict(tokenizer.get_dict_file())


def _new_tokenizer() -> jieba.Tokenizer:
    """A private jieba tokenizer with its own copy of the stock dictionary."""
    freq, total = _base_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(freq), total
    tokenizer.initialized = True
    return tokenizer
