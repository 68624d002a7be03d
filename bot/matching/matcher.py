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

A high score is not enough to answer: the topic must also explain the question's salient
words (those that are not particles, function words, numerals, places, or the generic
words of generic.toml). A topic whose text leaves more than half of their weight
unexplained does not answer; a candidate that explains them all may answer instead.
"""
from __future__ import annotations

import functools
import heapq
import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import jieba
from pypinyin import lazy_pinyin
from rapidfuzz import fuzz, process

from bot.knowledge.load import KnowledgeBase, Topic
from bot.matching.normalise import A_NOT_A, HAN, LATIN, MAX_QUERY_CHARS, normalise
from bot.matching.pinyin import drop_particles, fuzzy, split_pinyin
from bot.matching.small_talk import SmallTalk
from bot.matching.speller import MAX_TERM, Speller
from bot.settings import MatcherSettings

# answer: one topic; suggest: "您是不是想问"; unknown: "没听懂"; referral: another office's
# business; small_talk: greetings and thanks; overview: a vague question, the list of help.
Band = Literal["answer", "suggest", "unknown", "referral", "small_talk", "overview"]

# Particles and pronouns that say nothing about the topic (kept out of word features).
# Question words (哪里, 多少, 怎么) stay: inverse topic frequency already makes them cheap,
# and for some topics (where is the office, how much can I borrow) they are the point.
STOPWORDS = frozenset(
    "的 了 吗 呢 吧 么 是 我 你 他 她 它 我们 你们 他们 咱 咱们 俺 这 那 就 都 也 还 和 跟 与 或 "
    "在 给 把 被 让 对 从 向 到 得 地 着 过 个 些 一 不 没".split()
)
# Words of other offices' business and everyday matters (policies/offices.toml) pull a
# topic's score down unless that topic's own text uses the word.
OUT_OF_SCOPE_FACTOR = 0.55

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
# Largest share of a question's salient weight that the answering topic may leave
# unexplained: more than half, and the topic is about something else.
MAX_UNEXPLAINED = 0.5
# A single character is an ambiguous word (开, 小, 交): half the weight of a longer one.
SINGLE_CHAR_WEIGHT = 0.5
# jieba part-of-speech tags of words that name no subject: numerals, time words, pronouns,
# conjunctions, adverbs, prepositions, particles, interjections, measure words, places.
# Three or more characters ending so are place names (荣成市, 湖北省): other places' rules
# are answered with the county's own.
PLACE_SUFFIXES = "省市县州区"
FUNCTION_TAGS = frozenset("m mq t r c d p u uj ul uz ud ug uv y e o q f ns zg k h".split())



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
    office: str | None = None  # referral band: the office key of policies/offices.toml
    small_talk: str | None = None  # small_talk band: greeting, thanks or ack


@dataclass(frozen=True)
class _Analysis:
    text: str
    syllables: str  # fuzzy pinyin, space-separated, for rapidfuzz
    features: frozenset[str]  # kind letter (KIND_WEIGHT) + word or pinyin
    words: tuple[str, ...] = ()  # the text cut into words


@dataclass(frozen=True)
class _Doc:
    topic_id: str
    kind: str  # "title", "keyword" or "example"
    index: int
    syllables: str
    features: frozenset[str]


class Matcher:
    """Scores questions against one knowledge base; build once, then call match()."""

    def __init__(self, kb: KnowledgeBase, settings: MatcherSettings,
                 tokenizer: jieba.Tokenizer | None = None) -> None:
        self.kb = kb
        self.settings = settings
        self._sound_cache: dict[str, tuple[str, ...]] = {}
        self._synonyms = _synonym_pattern(kb.synonyms)
        self._small_talk = SmallTalk(kb.small_talk)
        self._abbreviations = _abbreviation_pattern(kb.abbreviations)
        # normalised office word -> office key, tried longest first
        self._office_words = {normalise(w): key for key, words in kb.offices.items() for w in words}
        self._office_words.pop("", None)
        self._office_pattern = _longest_first(self._office_words)
        self._cue_words = tuple(dict.fromkeys(
            [*filter(None, (normalise(w) for w in kb.no_office_words)), *self._office_words]))
        self._cue_pattern = _longest_first(dict.fromkeys(self._cue_words))
        overview = kb.overview
        self._overview = overview if overview and all(t in kb.topics for t in overview.topic_ids) else None
        self._vague_words = frozenset(normalise(w) for w in overview.words) if overview else frozenset()
        # A topic's own term made of generic words (创业补贴) still names that topic.
        terms = {self._replace_synonyms(normalise(k)) for t in kb.topics.values() for k in t.keywords}
        self._naming_terms = _longest_first(
            dict.fromkeys(t for t in terms if len(t) >= 3 and t not in self._vague_words))
        self._generic = self._vague_words | {normalise(w) for w in kb.generic_words}
        # Read at build time, so the first villager's question does not wait for it.
        self._function_words = _function_words()
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
        self._speller = Speller(vocabulary, self._synonyms[1], self._tokenizer.FREQ)
        self._docs: list[_Doc] = []
        # feature -> number of documents using it; per topic: feature -> its documents using it
        self._doc_count: Counter[str] = Counter()
        self._vocab: dict[str, Counter[str]] = {}
        self._keyword_features: dict[str, frozenset[str]] = {}
        self._topic_text: dict[str, str] = {}
        self._explained_text: dict[str, str] = {}
        # Documents are stored topic by topic: topic id -> (first, end) document numbers.
        self._doc_range: dict[str, tuple[int, int]] = {}
        # topic id -> (document number, pinyin) of its examples, for near-repeat scoring
        self._example_sounds: dict[str, list[tuple[int, str]]] = {}
        self._sounds_only: dict[str, list[str]] = {}
        # topic id -> feature -> (evidence, explained) factors, computed once: scoring a
        # question is then a set intersection and a few multiplications per topic.
        self._factors: dict[str, dict[str, tuple[float, float]]] = {}
        # topic id -> its title and keywords: an office word there is the topic's own
        self._claimed: dict[str, frozenset[str]] = {}
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
            self._claimed[topic.id] = frozenset(
                self._replace_synonyms(normalise(t)) for t in (topic.title, *topic.keywords))
            self._topic_text[topic.id] = "|".join(texts)
            # What the topic talks about, for the salience check: its documents, and the
            # answer and details the villager would read.
            told = self._replace_synonyms(normalise(" ".join((topic.answer, *topic.details.values()))))
            self._explained_text[topic.id] = self._topic_text[topic.id] + "|" + told
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
        kind = self._small_talk.kind(question) if exclude is None else None
        if kind is not None:
            return Match("small_talk", None, 0.0, (), small_talk=kind)
        plain = normalise(self._expand_abbreviations(question))
        text = self._replace_synonyms(plain)[:MAX_QUERY_CHARS]
        analysis = self._analyse(self._speller.correct(text), self._idf)
        if not analysis.features:
            return Match("unknown", None, 0.0, ())
        office = self._office(plain, text)
        if office is None and exclude is None and self._is_vague(analysis.text):
            return self._overview_match()
        excluded = self._find_doc(exclude)
        weights = {f: self._weight(f, excluded) for f in analysis.features}
        # Cues are looked up before spelling correction, which may turn 你叫 into 你教.
        cues = self._cues(plain, text, analysis.text)
        scored = self._score(analysis, weights, self._candidates(weights, excluded), excluded, cues)
        if not scored:
            return self._refer(office) or Match("unknown", None, 0.0, ())
        # Ties go to the topic listed first in the knowledge base, the same in every process.
        ranked = sorted(scored.items(), key=lambda item: (-item[1], self._order[item[0]]))
        top_id, top = ranked[0]
        salient = self._salient(analysis.words)
        unexplained = self._unexplained(salient, top_id)
        if unexplained > 0 and top >= self.settings.answer_threshold:
            # Another good candidate that explains every salient word answers instead.
            better = next((topic_id for topic_id, score in ranked[1:MAX_CANDIDATE_TOPICS]
                           if score >= self.settings.answer_threshold
                           and self._unexplained(salient, topic_id) == 0), None)
            if better is not None:
                ranked.sort(key=lambda item: item[0] != better)
                top_id, unexplained = better, 0.0
                top = scored[better]
        top = round(max(0.0, min(100.0, top)), 1)
        candidates = [Candidate(top_id, self.kb.topics[top_id].title, top)]
        for topic_id, score in ranked[1:self.settings.max_suggestions]:
            if score >= 0.6 * ranked[0][1] and score > 0:
                candidates.append(Candidate(topic_id, self.kb.topics[topic_id].title,
                                            round(min(score, top), 1)))
        if office is not None and not (top >= self.settings.answer_threshold
                                       and office[1] in self._claimed[top_id]):
            return Match("referral", None, top, tuple(candidates), office=office[0])
        if top >= self.settings.answer_threshold and unexplained <= MAX_UNEXPLAINED:
            return Match("answer", top_id, top, tuple(candidates))
        # A topic that explains none of the question's words is no suggestion either.
        band: Band = "suggest" if top >= self.settings.suggest_threshold and unexplained < 1 else "unknown"
        return Match(band, None, top, tuple(candidates))

    def _expand_abbreviations(self, question: str) -> str:
        """zm -> 怎么, sm -> 什么: chat abbreviations typed as a separate Latin run."""
        if self._abbreviations is None:
            return question
        lowered = unicodedata.normalize("NFKC", question[:MAX_QUERY_CHARS * 2]).lower()
        return self._abbreviations.sub(lambda m: self.kb.abbreviations[m.group(0)], lowered)

    def _office(self, *texts: str) -> tuple[str, str] | None:
        """(office key, word) of the first office word in the question, if any."""
        if self._office_pattern is None:
            return None
        for text in texts:
            found = self._office_pattern.search(text)
            if found:
                return self._office_words[found.group(0)], found.group(0)
        return None

    def _cues(self, *texts: str) -> list[str]:
        if self._cue_pattern is None:
            return []
        return list(dict.fromkeys(m.group(0) for t in texts for m in self._cue_pattern.finditer(t)))

    def _refer(self, office: tuple[str, str] | None) -> Match | None:
        """A referral to the office, when the question named one."""
        if office is None:
            return None
        return Match("referral", None, 0.0, (), office=office[0])

    def _is_vague(self, text: str) -> bool:
        """True when every word of the question is a generic word (政策, 补贴, 有啥...)."""
        if self._overview is None or (self._naming_terms and self._naming_terms.search(text)):
            return False
        words = [w for w in self._tokenizer.lcut(text, HMM=False) if w not in STOPWORDS]
        return bool(words) and all(self._made_of_vague_words(w) for w in words)

    def _made_of_vague_words(self, word: str) -> bool:
        """优惠政策 = 优惠 + 政策: a compound of generic words is generic too."""
        ok = [True] + [False] * len(word)
        for end in range(1, len(word) + 1):
            ok[end] = any(ok[start] and word[start:end] in self._vague_words for start in range(end))
        return ok[-1]

    def _overview_match(self) -> Match:
        assert self._overview is not None
        topics = self.kb.topics
        return Match("overview", None, 0.0,
                     tuple(Candidate(t, topics[t].title, 0.0) for t in self._overview.topic_ids))

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
                    syllables.extend(drop_particles(pieces))
            else:
                syllables.append("|")
        for i, syllable in enumerate(syllables):
            if syllable == "|":
                continue
            features.add("u" + syllable)
            if i + 1 < len(syllables) and syllables[i + 1] != "|":
                features.add("b" + syllable + " " + syllables[i + 1])
        spoken = " ".join(s for s in syllables if s != "|")
        return _Analysis(text, spoken, frozenset(features), tuple(words))

    def _salient(self, words: tuple[str, ...]) -> list[str]:
        """The words that say what the question is about (no particles, generic or place words)."""
        function_words = self._function_words
        return [w for w in dict.fromkeys(words)
                if HAN.match(w) and w not in STOPWORDS and w not in self._generic
                and w not in function_words and not self._made_of_generic_words(w)
                and not (len(w) >= 3 and w[-1] in PLACE_SUFFIXES)]

    def _made_of_generic_words(self, word: str) -> bool:
        """优惠政策 = 优惠 + 政策, 办理流程 = 办理 + 流程: a compound of generic words."""
        ok = [True] + [False] * len(word)
        for end in range(1, len(word) + 1):
            ok[end] = any(ok[start] and word[start:end] in self._generic for start in range(end))
        return ok[-1]

    def _unexplained(self, salient: list[str], topic_id: str) -> float:
        """Share (0-1) of the salient words' weight that the topic's text does not use."""
        named = self._keyword_features[topic_id]
        total = missing = 0.0
        for word in salient:
            weight = self._idf.get("w" + word, self._unknown_idf)
            weight *= SINGLE_CHAR_WEIGHT if len(word) == 1 else KEYWORD_BOOST if "w" + word in named else 1.0
            total += weight
            if not self._explains(topic_id, word):
                missing += weight
        return missing / total if total else 0.0

    def _explains(self, topic_id: str, word: str) -> bool:
        """The topic uses the word, or (for a typo the speller missed) all its syllable pairs."""
        vocab = self._vocab[topic_id]
        canonical = self._synonyms[1].get(word, word)  # 下岗工人 after the speller's 下刚工人
        if any("w" + w in vocab or w in self._explained_text[topic_id] for w in {word, canonical}):
            return True
        sounds = self._sounds(word)
        return len(sounds) > 1 and all(f"b{a} {b}" in vocab for a, b in zip(sounds, sounds[1:]))

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


def _documents(topic: Topic) -> list[tuple[str, int, str]]:
    """(kind, index, text) of a topic's title, keywords and examples."""
    docs = [("title", 0, topic.title)]
    docs += [("keyword", i, k) for i, k in enumerate(topic.keywords)]
    docs += [("example", i, e) for i, e in enumerate(topic.examples)]
    return docs


def _synonym_pattern(synonyms: dict[str, str]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """A regex trying longer variants first, and normalised variant -> canonical."""
    # Canonical terms map to themselves so that a variant inside one (执照 in 营业执照)
    # is not replaced again: the longer canonical term wins the match.
    canonical = {normalise(term): normalise(term) for term in synonyms.values()}
    for variant, term in synonyms.items():
        if A_NOT_A.search(variant):
            continue  # 能不能 is already reduced to 能, which must not become a variant
        key = normalise(variant)
        # A variant that normalises to one character (哪哈 loses the filler 哈) would
        # replace that character everywhere (有哪些 -> 有哪里些).
        if len(key) < 2 <= len(variant):
            continue
        if key and key not in canonical:
            canonical[key] = normalise(term)
    canonical = {k: v for k, v in canonical.items() if k}
    if not canonical:
        return None, canonical
    return re.compile("|".join(re.escape(v) for v in sorted(canonical, key=len, reverse=True))), canonical


def _longest_first(words: Collection[str]) -> re.Pattern[str] | None:
    """A regex matching any of the words, longer words first."""
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))


def _abbreviation_pattern(abbreviations: dict[str, str]) -> re.Pattern[str] | None:
    """Abbreviations as whole Latin runs only: zm in "贷款zm办" but not inside "zhuanmen"."""
    if not abbreviations:
        return None
    alternatives = "|".join(re.escape(a) for a in sorted(abbreviations, key=len, reverse=True))
    return re.compile(rf"(?<![a-z])(?:{alternatives})(?![a-z])")


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


@functools.cache
def _function_words() -> frozenset[str]:
    """Words of jieba's dictionary that name no subject (~0.2 s, once per process).

    Those tagged as function, number, time or place words, and single characters that are
    not nouns (开, 满, 可): 猪, 税 and 茶 stay.
    """
    with jieba.Tokenizer().get_dict_file() as lines:
        return frozenset(word for word, _, tag in (line.decode("utf-8").split() for line in lines)
                         if tag in FUNCTION_TAGS or (len(word) == 1 and not tag.startswith("n")))


def _new_tokenizer() -> jieba.Tokenizer:
    """A private jieba tokenizer with its own copy of the stock dictionary."""
    freq, total = _base_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(freq), total
    tokenizer.initialized = True
    return tokenizer
