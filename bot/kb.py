"""The knowledge base: a folder of markdown articles, split into sections and searched with BM25 (bm25s).

The sample articles ship inside the package (``bot/sample_kb/``), so an installed bot has them wherever it runs;
``kb.path`` points at an organisation's own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import bm25s

# Importing bm25s sets its logger to DEBUG, whenever that happens: its "building index" lines are not ours to print.
logging.getLogger("bm25s").setLevel(logging.WARNING)

SAMPLE_KB = Path(__file__).resolve().parent / "sample_kb"
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Words too common in helpdesk text to tell articles apart, on top of English stopwords.
_STOPWORDS = frozenset(
    """a an and are as at be but by can do does did for from has have i if in into is it its me my no not of on or
    our so that the their then there these this to was we what when where which who why will with you your yours
    please help hi hello thanks thank issue problem working work get got also just any all""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords; a crude plural fold so 'printers' matches 'printer'."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token in _STOPWORDS:
            continue
        if len(token) > 4 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        tokens.append(token)
    return tokens


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
        self._retriever: bm25s.BM25 | None = None
        corpus = [tokenize(f"{s.article} {s.article} {s.heading} {s.body}") for s in sections]
        if any(corpus):
            self._retriever = bm25s.BM25()
            self._retriever.index(corpus, show_progress=False)

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

    def search(self, query: str, *, k: int = 3) -> list[Hit]:
        """The ``k`` sections most relevant to ``query``; sections scoring zero are left out."""
        tokens = tokenize(query)
        if self._retriever is None or not tokens:
            return []
        k = min(k, len(self.sections))
        docs, scores = self._retriever.retrieve([tokens], k=k, show_progress=False)
        return [
            Hit(self.sections[int(i)], float(score)) for i, score in zip(docs[0], scores[0], strict=True) if score > 0
        ]
