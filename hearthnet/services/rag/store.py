"""One corpus on disk: `<corpora_dir>/<corpus>/corpus.sqlite` (spec §3.1).

Tables: `meta` (embedding_model, dim, chunk budget, created_at), `documents` (one row per
doc_cid), `chunks` (text, metadata, exact character range, and the embedding as a
float32 blob in the same row) and `chunks_fts` (FTS5 over text, heading path and title,
rowid = chunks.id). A document is written in ONE transaction — its row, every chunk with
its vector, every FTS row — so an ingest killed at any point leaves either the whole
document or nothing of it: never a chunk without its vector or the reverse, and
ingesting again finishes the job. The vector index (index.py) is derived from this file.

Only the rag worker opens it (one writer connection, one reader connection, each used
by one thread at a time).
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hearthnet.constants import CORPUS_NAME_RE
from hearthnet.errors import HearthNetError

DB_NAME = "corpus.sqlite"
CORPUS_NAME = CORPUS_NAME_RE
PERSONAL = "personal"  # local only: never advertised, never answered to a peer
SCHEMA_VERSION = "1"
FILTER_KEY = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
FILTER_LIST_MAX = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    doc_cid TEXT PRIMARY KEY, title TEXT NOT NULL, language TEXT, kind TEXT NOT NULL,
    pages INTEGER NOT NULL, chunks INTEGER NOT NULL, tokens INTEGER NOT NULL,
    metadata TEXT NOT NULL, size_bytes INTEGER NOT NULL, ingested_at REAL NOT NULL, event_id TEXT);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,
    doc_cid TEXT NOT NULL REFERENCES documents(doc_cid) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL, page INTEGER, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
    heading_path TEXT NOT NULL, language TEXT, tokens INTEGER NOT NULL, text TEXT NOT NULL,
    vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_cid, chunk_index);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, heading, title, tokenize = 'porter unicode61 remove_diacritics 2');
"""


def check_corpus_name(name: Any) -> str:
    if not isinstance(name, str) or not CORPUS_NAME.match(name):
        raise HearthNetError("bad_request", f"corpus name {name!r} must be 1-64 characters of a-z, 0-9 and '-'")
    return name


@dataclass
class ChunkRow:
    """A chunk ready to store (its vector travels beside it)."""

    chunk_id: str
    chunk_index: int
    page: int | None
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    tokens: int
    text: str


@dataclass
class DocumentRow:
    doc_cid: str
    title: str
    language: str | None
    kind: str
    pages: int
    metadata: dict[str, Any]
    size_bytes: int


def chunk_id_for(doc_cid: str, index: int) -> str:
    """Stable and unique in a corpus: 12 hex digits of the document's CID + the index."""
    return f"{doc_cid.removeprefix('blake3:')[:12]}-{index:04d}"


class CorpusStore:
    def __init__(self, corpora_dir: Path, name: str, *, directory: Path | None = None) -> None:
        """`directory` (default `<corpora_dir>/<name>`): where a reindex builds the
        corpus's successor before it takes the name's place."""
        self.name = check_corpus_name(name)
        self.dir = Path(directory) if directory is not None else Path(corpora_dir) / name
        self.path = self.dir / DB_NAME
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self.meta: dict[str, str] = {}

    # ------------------------------------------------------------------ open / create

    @staticmethod
    def exists(corpora_dir: Path, name: str) -> bool:
        return (Path(corpora_dir) / name / DB_NAME).is_file()

    def open(self, *, create_with: tuple[str, int] | None = None, budget: dict[str, int] | None = None) -> "CorpusStore":
        """Open (and with `create_with=(model, dim)` create) the corpus."""
        if not self.path.is_file() and create_with is None:
            raise HearthNetError("not_found", f"no corpus {self.name!r} on this node")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._w = self._connect()
        with self._wlock, self._w:
            self._w.executescript(_SCHEMA)
            if create_with is not None:
                model, dim = create_with
                rows = {"schema": SCHEMA_VERSION, "embedding_model": model, "dim": str(dim),
                        "created_at": str(time.time()), **{k: str(v) for k, v in (budget or {}).items()}}
                self._w.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", rows.items())
        self._r = self._connect()
        self.meta = dict(self._read("SELECT key, value FROM meta"))
        if "embedding_model" not in self.meta or "dim" not in self.meta:
            raise HearthNetError("internal_error", f"corpus {self.name!r} has no embedding model recorded "
                                                   f"({self.path}); delete it and ingest again")
        return self

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last document, never half of one
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def close(self) -> None:
        for conn in (self._w, self._r):
            if conn is not None:
                conn.close()
        self._w = self._r = None

    @property
    def model(self) -> str:
        return self.meta["embedding_model"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        assert self._r is not None, "CorpusStore.open() first"
        with self._rlock:
            return self._r.execute(sql, tuple(args)).fetchall()

    # ------------------------------------------------------------------ documents

    def document(self, doc_cid: str) -> dict[str, Any] | None:
        rows = self._read("SELECT doc_cid, title, language, kind, pages, chunks, tokens, event_id, metadata "
                          "FROM documents WHERE doc_cid = ?", (doc_cid,))
        if not rows:
            return None
        r = rows[0]
        return {"doc_cid": r[0], "title": r[1], "language": r[2], "kind": r[3], "pages": r[4],
                "chunks": r[5], "tokens": r[6], "event_id": r[7], "metadata": json.loads(r[8])}

    def documents(self) -> list[dict[str, Any]]:
        """Every document's row, in ingest order (what a reindex rebuilds)."""
        rows = self._read("SELECT doc_cid, title, language, kind, pages, metadata, size_bytes, event_id "
                          "FROM documents ORDER BY ingested_at, doc_cid")
        return [{"doc_cid": r[0], "title": r[1], "language": r[2], "kind": r[3], "pages": r[4],
                 "metadata": json.loads(r[5]), "size_bytes": r[6], "event_id": r[7]} for r in rows]

    def chunk_rows(self, doc_cid: str) -> list[ChunkRow]:
        """A document's stored chunks, in order (a reindex whose source blob is gone
        re-embeds these)."""
        rows = self._read("SELECT chunk_id, chunk_index, page, char_start, char_end, heading_path, tokens, text "
                          "FROM chunks WHERE doc_cid = ? ORDER BY chunk_index", (doc_cid,))
        return [ChunkRow(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7]) for r in rows]

    def add_document(self, doc: DocumentRow, chunks: list[ChunkRow], vectors: np.ndarray) -> list[int]:
        """Store a document with all its chunks and vectors in one transaction; returns
        the chunks' row ids. A document already present is left as it is (idempotent)."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or (len(vectors) and vectors.shape[1] != self.dim):
            raise HearthNetError("internal_error", f"vectors of dim {vectors.shape[-1]} for a corpus of dim {self.dim}")
        assert self._w is not None
        with self._wlock:
            conn = self._w
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM documents WHERE doc_cid = ?", (doc.doc_cid,)).fetchone():
                    conn.execute("ROLLBACK")
                    return []
                tokens = sum(c.tokens for c in chunks)
                conn.execute("INSERT INTO documents(doc_cid, title, language, kind, pages, chunks, tokens, "
                             "metadata, size_bytes, ingested_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (doc.doc_cid, doc.title, doc.language, doc.kind, doc.pages, len(chunks), tokens,
                              json.dumps(doc.metadata, sort_keys=True), doc.size_bytes, time.time()))
                ids = []
                for c, vec in zip(chunks, vectors):
                    cur = conn.execute(
                        "INSERT INTO chunks(chunk_id, doc_cid, chunk_index, page, char_start, char_end, "
                        "heading_path, language, tokens, text, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (c.chunk_id, doc.doc_cid, c.chunk_index, c.page, c.char_start, c.char_end,
                         json.dumps(list(c.heading_path)), doc.language, c.tokens, c.text, vec.tobytes()))
                    ids.append(int(cur.lastrowid))
                    conn.execute("INSERT INTO chunks_fts(rowid, text, heading, title) VALUES (?,?,?,?)",
                                 (cur.lastrowid, c.text, " ".join(c.heading_path), doc.title))
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # SQLite may have rolled back itself (a full disk)
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                    raise HearthNetError("disk_full", f"cannot write {self.path}: {exc}") from None
                raise
        return ids

    def set_event_id(self, doc_cid: str, event_id: str) -> None:
        assert self._w is not None
        with self._wlock:
            self._w.execute("UPDATE documents SET event_id = ? WHERE doc_cid = ?", (event_id, doc_cid))

    # ------------------------------------------------------------------ vectors and rows

    def stamp(self) -> tuple[int, int]:
        """(chunk count, highest chunk id): what the derived vector index must match."""
        n, top = self._read("SELECT count(*), coalesce(max(id), 0) FROM chunks")[0]
        return int(n), int(top)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self._read("SELECT id, vector FROM chunks ORDER BY id")
        return _ids_and_matrix(rows, self.dim)

    def vectors_for(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = [int(i) for i in ids]
        out: list[tuple] = []
        for k in range(0, len(ids), 500):
            part = ids[k:k + 500]
            out += self._read(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)
        return _ids_and_matrix(out, self.dim)

    def rows(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Chunk rows with their document's title and metadata, by chunk row id."""
        out: dict[int, dict[str, Any]] = {}
        for k in range(0, len(ids), 500):
            part = [int(i) for i in ids[k:k + 500]]
            for r in self._read(
                    "SELECT c.id, c.chunk_id, c.doc_cid, c.chunk_index, c.page, c.char_start, c.char_end, "
                    "c.heading_path, c.language, c.tokens, c.text, c.vector, d.title, d.kind, d.metadata "
                    f"FROM chunks c JOIN documents d USING(doc_cid) WHERE c.id IN ({','.join('?' * len(part))})",
                    part):
                out[r[0]] = {"chunk_id": r[1], "doc_cid": r[2], "chunk_index": r[3], "page": r[4],
                             "char_start": r[5], "char_end": r[6], "heading_path": json.loads(r[7]),
                             "language": r[8], "tokens": r[9], "text": r[10],
                             "vector": np.frombuffer(r[11], dtype=np.float32), "doc_title": r[12],
                             "source_type": r[13], "doc_metadata": json.loads(r[14])}
        return out

    def keyword(self, query: str, n: int, where: tuple[str, list[Any]] | None = None) -> list[int]:
        """Chunk ids by FTS5 BM25 (best first) for the words of `query`, any of them."""
        terms = fts_terms(query)
        if not terms:
            return []
        sql = ("SELECT f.rowid FROM chunks_fts f JOIN chunks c ON c.id = f.rowid JOIN documents d "
               "USING(doc_cid) WHERE chunks_fts MATCH ?")
        args: list[Any] = [" OR ".join(terms)]
        if where is not None:
            sql += " AND " + where[0]
            args += where[1]
        sql += " ORDER BY bm25(chunks_fts, 1.0, 0.5, 0.3) LIMIT ?"
        return [r[0] for r in self._read(sql, [*args, n])]

    def filtered_ids(self, where: tuple[str, list[Any]]) -> np.ndarray:
        rows = self._read("SELECT c.id FROM chunks c JOIN documents d USING(doc_cid) WHERE " + where[0], where[1])
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # ------------------------------------------------------------------ info

    def info(self) -> dict[str, Any]:
        docs, chunks = self._read("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)")[0]
        return {"name": self.name, "docs": docs, "chunks": chunks, "size_bytes": self.size_bytes(),
                "language_majority": self.language_majority(), "embedding_model": self.model,
                "dim": self.dim}

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def language_majority(self) -> str | None:
        rows = self._read("SELECT language, sum(chunks) FROM documents WHERE language IS NOT NULL GROUP BY language")
        tally = Tally({lang: n for lang, n in rows})
        return tally.most_common(1)[0][0] if tally else None


def _ids_and_matrix(rows: list[tuple], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim) \
        if rows else np.zeros((0, dim), dtype=np.float32)
    return ids, matrix


_TERM = re.compile(r"\w+", re.UNICODE)


def fts_terms(query: str, limit: int = 64) -> list[str]:
    """The query's words as quoted FTS5 strings (no operator of the user's reaches FTS5),
    without stopwords: "is it safe to ..." must not rank every chunk holding "it"."""
    from hearthnet.services.rag.lang import STOPWORDS_ALL

    words = [w.lower() for w in _TERM.findall(query)][:limit]
    kept = [w for w in words if w not in STOPWORDS_ALL] or words
    return ['"' + w.replace('"', '""') + '"' for w in dict.fromkeys(kept)]


def filter_clause(flt: Any) -> tuple[str, list[Any]] | None:
    """`input.filter` -> SQL over chunks c / documents d. Keys: language, doc_cid, page,
    any key of the document's metadata (equality, or any of a list), and min_<key> /
    max_<key> for numeric metadata (e.g. {"language": "de", "min_year": 2000})."""
    if flt is None or flt == {}:
        return None
    if not isinstance(flt, dict) or len(flt) > 16:
        raise HearthNetError("bad_request", "input.filter must be an object of at most 16 keys")
    parts: list[str] = []
    args: list[Any] = []
    for key, value in flt.items():
        if not isinstance(key, str) or not FILTER_KEY.match(key):
            raise HearthNetError("bad_request", f"input.filter key {key!r} must match [a-z_][a-z0-9_]*")
        column = {"language": "c.language", "doc_cid": "c.doc_cid", "page": "c.page"}.get(key)
        bound = None
        if column is None:
            if key.startswith(("min_", "max_")) and len(key) > 4:
                bound = ">=" if key.startswith("min_") else "<="
                column = f"json_extract(d.metadata, '$.{key[4:]}')"
            else:
                column = f"json_extract(d.metadata, '$.{key}')"
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > FILTER_LIST_MAX or not all(_scalar(v) for v in values):
            raise HearthNetError("bad_request", f"input.filter.{key} must be a string, number or boolean, "
                                                f"or a list of 1-{FILTER_LIST_MAX} of them")
        if bound is not None:
            if len(values) != 1 or isinstance(values[0], (str, bool)):
                raise HearthNetError("bad_request", f"input.filter.{key} must be one number")
            parts.append(f"{column} {bound} ?")
        else:
            parts.append(f"{column} IN ({','.join('?' * len(values))})")
        args += values
    return " AND ".join(parts), args


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) and not (isinstance(v, str) and len(v) > 1024)


def list_corpora(corpora_dir: Path) -> list[str]:
    root = Path(corpora_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if CORPUS_NAME.match(p.name) and (p / DB_NAME).is_file())
