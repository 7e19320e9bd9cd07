"""The corpora a node holds: each an open CorpusStore with its vector index, opened at
start (discovered on disk) or created by the first ingest into a new name.

A reindex builds a corpus's successor in `<corpora_dir>/.reindex-<name>/` (names with a
dot are never corpora) and `swap()` puts it in place with two renames: the live
directory to `.old-<name>`, the new one to `<name>`. `discover()` at start repairs a
crash at any point: a `.reindex-` directory is an unfinished build (deleted); an
`.old-` directory beside a live one is a finished swap (deleted); an `.old-` directory
alone is a swap cut between its renames (renamed back: the old corpus, intact)."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearthnet.errors import HearthNetError
from hearthnet.services.rag.index import HNSW_THRESHOLD, VectorIndex
from hearthnet.services.rag.store import PERSONAL, CorpusStore, check_corpus_name, list_corpora

log = logging.getLogger("hearthnet.rag")

RETIRE_SECONDS = 60.0  # a replaced store stays open this long for the searches still on it (rag.query: 10 s)


@dataclass
class Corpus:
    store: CorpusStore
    index: VectorIndex
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loading: asyncio.Future | None = None  # the index being loaded or rebuilt in a thread
    retired: bool = False  # replaced by a reindex: writers holding it must take the new one

    async def ready(self) -> VectorIndex:
        """The index, once loaded: a large one rebuilt at start does not hold up the
        worker's READY, only the first searches of that corpus."""
        if self.loading is None:
            self.loading = asyncio.ensure_future(asyncio.to_thread(self.index.load))
        await asyncio.shield(self.loading)
        return self.index

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def model(self) -> str:
        return self.store.model


class Corpora:
    def __init__(self, root: Path, *, hnsw_threshold: int = HNSW_THRESHOLD) -> None:
        self.root = Path(root)
        self.hnsw_threshold = hnsw_threshold
        self._open: dict[str, Corpus] = {}
        self._creating = asyncio.Lock()

    def names(self, *, include_personal: bool = True) -> list[str]:
        return sorted(n for n in self._open if include_personal or n != PERSONAL)

    def __contains__(self, name: str) -> bool:
        return name in self._open

    def staging_dir(self, name: str) -> Path:
        return self.root / f".reindex-{check_corpus_name(name)}"

    def _old_dir(self, name: str) -> Path:
        return self.root / f".old-{name}"

    def _repair(self) -> None:
        """Finish or undo what a reindex cut short (see the module's docstring)."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.name.startswith(".reindex-"):
                shutil.rmtree(path, ignore_errors=True)
                log.warning("removed an unfinished reindex", extra={"corpus": path.name[len(".reindex-"):]})
            elif path.name.startswith(".old-"):
                live = self.root / path.name[len(".old-"):]
                if live.exists():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.replace(path, live)
                    log.warning("a reindex was cut during its swap; the corpus is back as it was",
                                extra={"corpus": live.name})

    async def discover(self) -> list[str]:
        """Open every corpus on disk (indexes load or rebuild in a thread); a corpus that
        cannot be opened is logged and left out, the others are served."""
        await asyncio.to_thread(self._repair)
        for name in await asyncio.to_thread(list_corpora, self.root):
            if name in self._open:
                continue
            try:
                corpus = await asyncio.to_thread(self._load, name, None, None)
            except Exception as exc:  # a damaged corpus must not take the others down
                log.error("corpus cannot be opened; not served", extra={"corpus": name, "reason": str(exc)})
                continue
            self._open[name] = corpus
            corpus.loading = asyncio.ensure_future(asyncio.to_thread(corpus.index.load))
        return self.names()

    def _load(self, name: str, create_with: tuple[str, int] | None, budget: dict[str, int] | None) -> Corpus:
        store = CorpusStore(self.root, name).open(create_with=create_with, budget=budget)
        return Corpus(store, VectorIndex(store, threshold=self.hnsw_threshold))

    def get(self, name: str) -> Corpus:
        check_corpus_name(name)
        corpus = self._open.get(name)
        if corpus is None:
            raise HearthNetError("not_found", f"no corpus {name!r} on this node")
        return corpus

    async def get_or_create(self, name: str, model: str, dim: int, budget: dict[str, int]) -> tuple[Corpus, bool]:
        check_corpus_name(name)
        async with self._creating:
            if name in self._open:
                return self._open[name], False
            corpus = await asyncio.to_thread(self._load, name, (model, dim), budget)
            self._open[name] = corpus
            log.info("corpus created", extra={"corpus": name, "embedding_model": model, "dim": dim})
            return corpus, True

    async def swap(self, old: Corpus) -> Corpus:
        """Put the corpus built in `staging_dir(name)` in `old`'s place (the caller holds
        `old.write_lock` and has closed the new store). Searches already running on the
        old store finish on it: its files stay open until `retire_later` closes them."""
        name = old.name
        live, staged, gone = self.root / name, self.staging_dir(name), self._old_dir(name)

        def renames() -> Corpus:
            shutil.rmtree(gone, ignore_errors=True)  # a leftover of an earlier swap; `live` is whole
            os.replace(live, gone)
            os.replace(staged, live)
            shutil.rmtree(gone, ignore_errors=True)  # open files of the old store live on until closed
            return self._load(name, None, None)

        new = await asyncio.to_thread(renames)
        old.retired = True
        self._open[name] = new
        new.loading = asyncio.ensure_future(asyncio.to_thread(new.index.load))
        asyncio.get_running_loop().call_later(RETIRE_SECONDS, old.store.close)
        return new

    def infos(self, names: list[str]) -> list[dict[str, Any]]:
        return [self._open[n].store.info() for n in names if n in self._open]

    def close(self) -> None:
        for corpus in self._open.values():
            if corpus.loading is not None and not corpus.loading.done():
                corpus.loading.cancel()  # the thread finishes on its own; nothing is saved half
            try:
                corpus.index.flush()
            except (OSError, RuntimeError) as exc:  # derived data: rebuilt at the next start
                log.warning("vector index not saved", extra={"corpus": corpus.name, "reason": str(exc)})
            corpus.store.close()
        self._open.clear()
