"""The knowledge base: a folder of markdown articles, split into sections and searched with BM25 (bm25s).

The sample articles ship inside the package (``bot/sample_kb/``), so an installed bot has them wherever it runs;
``kb.path`` points at an organisation's own.

Words are stemmed with the Snowball English stemmer (PyStemmer, the stemmer bm25s itself uses), so "jammed" finds
"Paper jams". Search is in two parts: an index of articles (title, headings, introduction) says what a question
is about, an index of sections (heading, steps) which part answers it, and a section's score adds its article's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import bm25s
import Stemmer

# Importing bm25s sets its logger to DEBUG, whenever that happens: its "building index" lines are not ours to print.
logging.getLogger("bm25s").setLevel(logging.WARNING)

SAMPLE_KB = Path(__file__).resolve().parent / "sample_kb"
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Words too common in helpdesk text to tell articles apart, on top of English stopwords.
_STOPWORDS = frozenset(
    """a an and are as at be but by can do does did for from has have i if in into is it its me my no not of on or
    our so that the their then there these this to was we what when where which who why will with you your yours
    please help hi hello thanks thank issue problem working work get got also just any all
    still again same anymore yet already
    can't cannot won't don't doesn't didn't isn't aren't wasn't i'm i've it's""".split()
)
# The same thing in the words people use and the words articles use.
_ALIASES = (
    (re.compile(r"\blog(?:s|ged|ging)? ?(?:in|on)\b"), "sign in"),
    (re.compile(r"\b(?:iphone|android|smartphone|mobile)\b"), "phone"),
    (re.compile(r"\b(?:wireless|wlan)\b"), "wifi"),
)
_STEMMER = Stemmer.Stemmer("english")
# Weights of a section's heading against its body, and of an article's title against its headings.
_HEADING_WEIGHT = 2
_TITLE_WEIGHT = 2


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without stopwords: "Printers jammed" -> ["printer", "jam"]."""
    text = text.lower()
    for pattern, replacement in _ALIASES:
        text = pattern.sub(replacement, text)
    words = [w.replace("-", "") for w in _TOKEN.findall(text) if w not in _STOPWORDS]
    stems: list[str] = _STEMMER.stemWords(words)
    return stems


@dataclass(frozen=True, slots=True)
class Section:
    """One ``##`` section of an article (the lead paragraph is the section named after the article)."""

    article: str  # article title
    slug: str  # file name without .md
    heading: str
    body: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result with its BM25 score (higher is more relevant)."""

    section: Section
    score: float


def parse_article(slug: str, text: str) -> list[Section]:
    """Split one markdown article into sections. The first ``# `` line is the title."""
    lines = text.strip().splitlines()
    title = slug.replace("-", " ").title()
    if lines and lines[0].startswith("# "):
        title = lines[0][2:].strip()
        lines = lines[1:]
    sections: list[Section] = []
    heading, body = title, list[str]()
    for line in lines:
        if line.startswith("## "):
            if "".join(body).strip():
                sections.append(Section(title, slug, heading, "\n".join(body).strip()))
            heading, body = line[3:].strip(), []
        else:
            body.append(line)
    if "".join(body).strip():
        sections.append(Section(title, slug, heading, "\n".join(body).strip()))
    return sections


class KnowledgeBase:
    """Every section of every article, indexed once at start."""

    def __init__(self, sections: list[Section], *, directory: Path | None = None) -> None:
        self.sections = sections
        self.directory = directory  # where the articles were read from, for banners
        self._slugs = list(dict.fromkeys(s.slug for s in sections))
        self._articles: bm25s.BM25 | None = None
        self._sections: bm25s.BM25 | None = None
        articles = []
        for slug in self._slugs:
            own = [s for s in sections if s.slug == slug]
            lead = " ".join(s.body for s in own if s.heading == s.article)
            articles.append(tokenize(" ".join([own[0].article] * _TITLE_WEIGHT + [s.heading for s in own] + [lead])))
        corpus = [tokenize(" ".join([s.heading] * _HEADING_WEIGHT + [s.body])) for s in sections]
        if any(corpus):
            self._articles, self._sections = bm25s.BM25(), bm25s.BM25()
            self._articles.index(articles, show_progress=False)
            self._sections.index(corpus, show_progress=False)

    @classmethod
    def from_directory(cls, path: str | Path) -> KnowledgeBase:
        """Load ``*.md`` from ``path``; a missing directory gives an empty knowledge base."""
        directory = Path(path).absolute()
        sections: list[Section] = []
        if directory.is_dir():
            for file in sorted(directory.glob("*.md")):
                sections.extend(parse_article(file.stem, file.read_text(encoding="utf-8")))
        return cls(sections, directory=directory)

    def describe(self) -> str:
        """``8 articles in /path/to/kb``, for banners."""
        count = len(self.articles)
        where = f" in {self.directory}" if self.directory is not None else ""
        sample = " (the sample articles; set kb.path for your own)" if self.directory == SAMPLE_KB else ""
        return f"{count} article{'' if count == 1 else 's'}{where}{sample}"

    @property
    def articles(self) -> list[str]:
        """Article titles, in file order."""
        return list(dict.fromkeys(s.article for s in self.sections))

    def steps_for(self, section: Section) -> Section:
        """The section to show for a hit: an article's lead paragraph only introduces it, so show its first steps."""
        if section.heading != section.article:
            return section
        index = self.sections.index(section)
        following = self.sections[index + 1] if index + 1 < len(self.sections) else None
        return following if following is not None and following.slug == section.slug else section

    def _scores(self, index: bm25s.BM25 | None, size: int, tokens: list[str]) -> dict[int, float]:
        if index is None or not tokens or not size:
            return {}
        docs, scores = index.retrieve([tokens], k=size, show_progress=False)
        return {int(i): float(score) for i, score in zip(docs[0], scores[0], strict=True) if score > 0}

    def _ranked(self, tokens: list[str]) -> dict[int, float]:
        """Section index -> its score plus its article's, for every section with words of the question (or, for an
        article the question is about, its introduction)."""
        articles = self._scores(self._articles, len(self._slugs), tokens)
        sections = self._scores(self._sections, len(self.sections), tokens)
        about = {self._slugs[i]: score for i, score in articles.items()}
        return {
            i: sections.get(i, 0.0) + about.get(section.slug, 0.0)
            for i, section in enumerate(self.sections)
            if i in sections or (section.slug in about and section.heading == section.article)
        }

    def search(self, query: str, *, k: int = 3) -> list[Hit]:
        """The ``k`` sections most relevant to ``query``, best first; sections scoring zero are left out."""
        ranked = self._ranked(tokenize(query))
        best = sorted(ranked, key=lambda i: (-ranked[i], i))[:k]
        return [Hit(self.sections[i], ranked[i]) for i in best]

    def answer(self, query: str) -> Section | None:
        """The section to show a person who asked ``query``: in the article it is about, the section its words
        point to; when they say no more than the article's title ("my VPN is not working"), the first steps."""
        tokens = tokenize(query)
        ranked = self._ranked(tokens)
        if not ranked:
            return None
        slug = self.sections[min(ranked, key=lambda i: (-ranked[i], i))].slug
        steps = [i for i, s in enumerate(self.sections) if s.slug == slug and s.heading != s.article]
        if not steps:
            return next(s for s in self.sections if s.slug == slug)
        title = set(tokenize(self.sections[steps[0]].article))
        specific = self._scores(self._sections, len(self.sections), [t for t in tokens if t not in title])
        if not any(i in specific for i in steps):
            return self.sections[steps[0]]
        matched = self._scores(self._sections, len(self.sections), tokens)
        return self.sections[max(steps, key=lambda i: (matched.get(i, 0.0), -i))]
