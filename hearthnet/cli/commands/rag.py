"""`hearthnet rag list|ingest|reindex|query|verify`: the community's document corpora,
through the running node (rag.list_corpora, file.add + rag.ingest, rag.reindex,
rag.query; see hearthnet/services/rag/ and README "Ask with sources").

`ingest` takes files and directories (searched recursively for .pdf .md .html .htm .txt).
Each file is added to the blob store (`file.add`), then indexed (`rag.ingest`); a file
that fails is reported and skipped and the rest go on (exit 1 at the end if any failed).
Ingest is idempotent per (corpus, document CID), so running it again after an interrupted
run skips what is done ("already indexed") and finishes the rest.

`verify` fetches a document (verified against its CID) and checks that a cited passage is
exactly the document's extracted text at the given character range."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output
from hearthnet.constants import CORPUS_NAME_RE

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.localapi import LocalApi

CORPUS_RE = CORPUS_NAME_RE  # the same rule as the rag worker's
SUFFIXES = (".pdf", ".md", ".html", ".htm", ".txt")  # what a directory is searched for
MAX_K = 20
Tick = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- shared



def check_corpus(name: str | None) -> str | None:
    """A corpus name as the worker accepts it, or exit 2 before any work."""
    from hearthnet.errors import HearthNetError

    if name is not None and not CORPUS_RE.match(name):
        raise HearthNetError("usage", f"--corpus {name!r} is not a corpus name: 1..64 characters a-z, 0-9 and '-'")
    return name


def call(api: "LocalApi", cap: str, params: dict[str, Any], inp: dict[str, Any]) -> dict[str, Any]:
    """A unary call; its whole response {output, meta}."""
    reply = api.call(cap, "1.0", {"params": params, "input": inp})
    assert isinstance(reply, dict)
    return reply


def stream(api: "LocalApi", cap: str, params: dict[str, Any], inp: dict[str, Any],
           tick: Tick | None = None) -> dict[str, Any]:
    """Follow a stream: `progress` frames to `tick`, the `done` data returned (a capability
    that answered without a stream: its output)."""
    from hearthnet.errors import HearthNetError

    done: dict[str, Any] | None = None
    for event, data in api.call(cap, "1.0", {"params": params, "input": inp}, stream=True):  # type: ignore[union-attr]
        if event == "progress" and tick is not None:
            tick(data)
        elif event == "response":  # the node answered without a stream
            done = data.get("output") if isinstance(data.get("output"), dict) else {}
        elif event == "done" and done is None:
            done = data
    if done is None:
        raise HearthNetError("bad_response", f"the node's {cap} stream ended without a result")
    if isinstance(done.get("output"), dict):  # a `done` carrying the whole {output, meta} (rag.ingest)
        meta = done.get("meta")
        return {**(meta if isinstance(meta, dict) else {}), **done["output"]}
    return done


def short_cid(cid: Any) -> str:
    return str(cid or "-").removeprefix("blake3:")[:12]


def plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def short_node(node: Any) -> str:
    from hearthnet.cli.render import short_node_id

    return short_node_id(node if isinstance(node, str) else None)


# --------------------------------------------------------------------------- list


LOCAL_KEYS = ("name", "docs", "chunks", "size_bytes", "language_majority", "embedding_model")


@dataclass
class ListResult:
    corpora: list[dict[str, Any]]
    remote: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"corpora": self.corpora, "remote": self.remote}

    def human(self, out: Output) -> None:
        from hearthnet.units import size_text

        if self.corpora:
            out.table(["corpus", "docs", "chunks", "size", "language", "embedding model"],
                      [[c["name"], c["docs"], c["chunks"],
                        size_text(c["size_bytes"]) if isinstance(c["size_bytes"], int) else "-",
                        c["language_majority"], c["embedding_model"]] for c in self.corpora],
                      title="On this node", right=("docs", "chunks", "size"))
        else:
            out.echo("No corpus on this node yet (add documents with `hearthnet rag ingest PATH --corpus NAME`).")
        if self.remote:
            out.echo()
            out.table(["corpus", "node"], [[r["name"], short_node(r["node_id"])] for r in self.remote],
                      title="On peers (rag.query)")


def list_corpora(state: "CliState") -> ListResult:
    """This node's corpora (rag.list_corpora, with their sizes), and the corpora peers
    offer: the names in the `params.corpora` of their rag.query descriptors, which the
    local API's capability list shows."""
    api = state.api()
    listed = call(api, "rag.list_corpora", {}, {}).get("output") or {}
    corpora = [{k: c.get(k) for k in LOCAL_KEYS} for c in listed.get("corpora") or [] if isinstance(c, dict)]
    remote: list[dict[str, Any]] = []
    for cap in api.get("/api/v1/capabilities").get("capabilities") or []:
        if cap.get("name") != "rag.query" or cap.get("local"):
            continue
        names = (cap.get("params") or {}).get("corpora") or []
        remote.extend({"name": n, "node_id": cap.get("node_id")} for n in names if isinstance(n, str))
    remote.sort(key=lambda r: (r["name"], str(r["node_id"])))
    return ListResult(sorted(corpora, key=lambda c: str(c["name"])), remote)


# --------------------------------------------------------------------------- ingest


def find_files(paths: tuple[Path, ...]) -> list[Path]:
    """Absolute files to ingest, in order, each once: a file as given, a directory's
    supported files (recursive, sorted). A path that does not exist exits 2, naming it,
    before anything is sent."""
    from hearthnet.errors import HearthNetError

    out: list[Path] = []
    for p in paths:
        full = Path(os.path.abspath(p.expanduser()))
        if not full.exists():
            raise HearthNetError("usage", f"{p} does not exist")
        if full.is_dir():
            out.extend(sorted(f for f in full.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES))
        elif full.is_file():
            out.append(full)
        else:
            raise HearthNetError("usage", f"{p} is not a regular file or a directory")
    return list(dict.fromkeys(out))


@dataclass
class IngestResult:
    corpus: str
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(f["status"] == "failed" for f in self.files) else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.files if f["status"] == s) for s in ("indexed", "already_indexed", "failed")}

    def to_dict(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "files": self.files, **self.counts()}

    def human(self, out: Output) -> None:
        for f in self.files:
            if f["status"] == "failed":
                err = f["error"]
                out.echo(out.style("failed", fg="red") + f": {f['path']}: {err['message']} ({err['code']})")
            elif f["status"] == "already_indexed":
                out.echo(f"already indexed: {f['path']}  ({short_cid(f['cid'])})")
            else:
                pages = f"{plural(f['pages'], 'page')}, " if isinstance(f.get("pages"), int) else ""
                out.echo(f"indexed: {f['path']}  ({pages}{plural(f['chunks_indexed'], 'chunk')}, "
                         f"{short_cid(f['cid'])})")
        c = self.counts()
        out.echo(f"\n{self.corpus}: {c['indexed']} indexed, {c['already_indexed']} already indexed, "
                 f"{c['failed']} failed")


@contextmanager
def ingest_progress(out: Output, enabled: bool, total_files: int) -> Iterator["IngestBars | None"]:
    """Rich bars on stderr for a person at a terminal: one for the files, one for the
    current file's stage (pages, chunks) with its rate and ETA."""
    if not enabled or not out.err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=out.err_console,
                  transient=True) as bar:
        yield IngestBars(bar, total_files)


class IngestBars:
    def __init__(self, bar: Any, total_files: int) -> None:
        self.bar = bar
        self.files = bar.add_task("files", total=total_files, rate="")
        self.current: Any = None

    def start(self, name: str) -> Tick:
        if self.current is not None:
            self.bar.remove_task(self.current)
        self.current = self.bar.add_task(name, total=None, rate="")
        seen: dict[str, Any] = {}  # pages and chunks, once the worker has counted them

        def tick(frame: dict[str, Any]) -> None:
            seen.update({k: frame[k] for k in ("pages", "chunks") if isinstance(frame.get(k), int)})
            counted = ", ".join(f"{seen[k]} {k}" for k in ("pages", "chunks") if k in seen)
            rate = frame.get("embed_rate")
            self.bar.update(self.current, description=f"{frame.get('stage') or ''} {name}"
                            + (f" ({counted})" if counted else ""), completed=frame.get("current") or 0,
                            total=frame.get("total"), rate=f"{rate} chunks/s" if rate else "")

        return tick

    def file_done(self) -> None:
        self.bar.advance(self.files)


def _ingest_one(api: "LocalApi", path: Path, corpus: str, meta: dict[str, Any], tick: Tick | None,
                entry: dict[str, Any]) -> None:
    """Store, then index one file, filling `entry` as it goes (so a failure still names
    the CID the file was stored under)."""
    from hearthnet.cli.commands.file import _stream as file_stream

    added = file_stream(api, "file.add", {"path": str(path)}, tick)
    entry["cid"] = cid = (added.get("manifest") or {}).get("cid")
    done = stream(api, "rag.ingest", {"corpus": corpus}, {"doc_cid": cid, **meta}, tick)
    entry.update(status="already_indexed" if done.get("already_indexed") else "indexed",
                 chunks_indexed=done.get("chunks_indexed"), pages=done.get("pages"))


def ingest(state: "CliState", paths: tuple[Path, ...], corpus: str, *, title: str | None, language: str | None,
           show: bool, out: Output) -> IngestResult:
    from hearthnet.errors import HearthNetError, NodeNotRunning

    check_corpus(corpus)
    files = find_files(paths)
    if title is not None and len(files) != 1:
        raise HearthNetError("usage", f"--title names one document; {len(files)} files were given")
    if not files:
        raise HearthNetError("usage", "no .pdf, .md, .html, .htm or .txt file in " + ", ".join(map(str, paths)))
    meta = {k: v for k, v in (("title", title), ("language", language)) if v is not None}
    api = state.api()
    result = IngestResult(corpus)
    with ingest_progress(out, show, len(files)) as bars:
        for path in files:
            entry: dict[str, Any] = {"path": str(path), "cid": None, "status": "failed", "chunks_indexed": None,
                                     "pages": None, "error": None}
            try:
                _ingest_one(api, path, corpus, meta, bars.start(path.name) if bars else None, entry)
            except NodeNotRunning:
                raise  # nothing else will work either
            except HearthNetError as exc:  # reported and skipped; the rest go on
                entry.update(status="failed", error={"code": exc.code, "message": exc.message})
            result.files.append(entry)
            if bars:
                bars.file_done()
    return result


# --------------------------------------------------------------------------- reindex


@dataclass
class ReindexResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {k: self.doc.get(k) for k in ("corpus", "embedding_model", "previous_model", "dim", "docs", "chunks",
                                             "from_stored_chunks", "ms", "note")}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        out.echo(f"reindexed {d['corpus']}: {d['chunks']} chunks of {d['docs']} documents with "
                 f"{d['embedding_model']} in {(d['ms'] or 0) / 1000:.1f} s")
        if d["from_stored_chunks"]:
            out.echo(f"{plural(d['from_stored_chunks'], 'document')} no longer in the blob store: "
                     "re-embedded from the stored chunks")
        if d["note"]:
            out.echo(f"note: {d['note']}")


def reindex(state: "CliState", corpus: str, model: str | None, *, show: bool, out: Output) -> ReindexResult:
    check_corpus(corpus)
    api = state.api()
    inp = {"embedding_model": model} if model else {}
    with ingest_progress(out, show, 1) as bars:
        done = stream(api, "rag.reindex", {"corpus": corpus}, inp, bars.start(corpus) if bars else None)
    return ReindexResult({"corpus": corpus, **done})


# --------------------------------------------------------------------------- query


@dataclass
class QueryResult:
    corpus: str
    query: str
    chunks: list[dict[str, Any]]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "query": self.query, "chunks": self.chunks,
                "embedding_model": self.meta.get("embedding_model"), "ms": self.meta.get("ms")}

    def human(self, out: Output) -> None:
        if not self.chunks:
            out.echo(f"No chunk of {self.corpus} matches.")
            return
        rows = []
        for c in self.chunks:
            m = c.get("metadata") or {}
            text = " ".join(str(c.get("text") or "").split())
            rows.append([c.get("rank"), f"{c.get('score', 0):.3f}", m.get("doc_title") or "-", m.get("page"),
                         short_cid(m.get("doc_cid")), text[:100] + ("…" if len(text) > 100 else "")])
        out.table(["#", "score", "title", "page", "doc", "text"], rows, right=("#", "score", "page"))


def query(state: "CliState", text: str, corpus: str, k: int) -> QueryResult:
    from hearthnet.errors import HearthNetError

    check_corpus(corpus)
    if not 1 <= k <= MAX_K:
        raise HearthNetError("usage", f"-k must be 1..{MAX_K}, got {k}")
    reply = call(state.api(), "rag.query", {"corpus": corpus}, {"query": text, "k": k, "include_text": True})
    return QueryResult(corpus, text, (reply.get("output") or {}).get("chunks") or [], reply.get("meta") or {})


# --------------------------------------------------------------------------- verify


class DocumentCache:
    """Documents fetched for verification, each once: `file.get` brings the blob into this
    node's store from whoever holds it (every chunk checked against the CID) and writes it
    to a temporary directory, from which its bytes are read."""

    def __init__(self, api: "LocalApi") -> None:
        self.api = api
        self.docs: dict[str, tuple[bytes, str | None, str | None]] = {}

    def get(self, cid: str) -> tuple[bytes, str | None, str | None]:
        if cid not in self.docs:
            import tempfile

            from hearthnet.cli.commands.file import _stream as file_stream

            with tempfile.TemporaryDirectory(prefix="hearthnet-verify-") as tmp:
                done = file_stream(self.api, "file.get", {"cid": cid, "out": tmp}, None)
                m = done.get("manifest") or {}
                self.docs[cid] = (Path(done["out"]).read_bytes(), m.get("filename"), m.get("mime_type"))
        return self.docs[cid]


def verify_source(docs: DocumentCache, cid: str, start: int, end: int, page: int | None,
                  passage: str | None) -> dict[str, Any]:
    """{verified, found, reason} for one cited passage."""
    from hearthnet.errors import HearthNetError
    from hearthnet.services.rag.ask import verify_citation

    try:
        blob, filename, mime = docs.get(cid)
        v = verify_citation(passage, blob, start, end, page=page, filename=filename, mime=mime)
    except HearthNetError as exc:
        return {"verified": False, "found": None, "reason": f"{exc.message} ({exc.code})"}
    return {"verified": v.ok, "found": v.found, "reason": v.reason or None}


@dataclass
class VerifyResult:
    doc: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return 0 if self.doc["verified"] else 1

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        d = self.doc
        where = f"{short_cid(d['cid'])} " + (f"page {d['page']} " if d["page"] else "") + f"[{d['start']}:{d['end']}]"
        if d["verified"]:
            out.echo(out.style("verified", fg="green") + f": {where}")
        else:
            out.echo(out.style("NOT verified", fg="red") + f": {where}: {d['reason']}")
        if d["found"]:
            out.echo(d["found"])


def verify(state: "CliState", cid: str, start: int, end: int, page: int | None, text: str | None) -> VerifyResult:
    from hearthnet.cli.commands.file import resolve_cid
    from hearthnet.errors import HearthNetError

    if start < 0 or end < start:
        raise HearthNetError("usage", f"--start {start} --end {end} is not a character range")
    api = state.api()
    full = resolve_cid(api, cid)
    result = verify_source(DocumentCache(api), full, start, end, page, text)
    return VerifyResult({"cid": full, "start": start, "end": end, "page": page, **result})


# --------------------------------------------------------------------------- commands

_CORPUS_HELP = "The corpus: 1..64 characters a-z, 0-9 and '-'."


@click.group("rag")
def cli() -> None:
    """The community's document corpora: list, ingest, reindex, query, verify a citation."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="Print {corpora: [{name, docs, chunks, size_bytes, language_majority, embedding_model}], "
                   "remote: [{name, node_id}]}.")
@click.pass_obj
def list_cmd(state: "CliState", as_json: bool) -> None:
    """This node's corpora (documents, chunks, size, language, embedding model), and the
    corpora peers offer to rag.query."""
    boundary.run(lambda: list_corpora(state), as_json=as_json, state=state)


@cli.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH...")
@click.option("--corpus", required=True, help=_CORPUS_HELP)
@click.option("--title", help="The document's title (one file only; default: what the document says).")
@click.option("--language", help="Its language, e.g. de or en.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {corpus, files: [{path, cid, status, chunks_indexed, pages, error}], indexed, "
                   "already_indexed, failed}.")
@click.pass_obj
def ingest_cmd(state: "CliState", paths: tuple[Path, ...], corpus: str, title: str | None, language: str | None,
               as_json: bool) -> None:
    """Add documents to a corpus: files, and directories searched for .pdf .md .html .htm
    .txt. Each is stored (file add), then indexed; one that fails is reported and skipped.
    Run it again to finish an interrupted ingest: what is done says "already indexed".

    Exit 0 if every file is indexed, 1 if any failed, 2 for a path that does not exist or
    a bad corpus name (before any work), 3 if no node runs."""
    out = Output()
    boundary.run(lambda: ingest(state, paths, corpus, title=title, language=language, show=not as_json, out=out),
                 as_json=as_json, state=state, out=out)


@cli.command("reindex")
@click.option("--corpus", required=True, help=_CORPUS_HELP)
@click.option("--embedding-model", "model", help="Embed with this model from now on (default: the configured one).")
@click.option("--json", "as_json", is_flag=True, help="Print {corpus, embedding_model, docs, chunks, ms}.")
@click.pass_obj
def reindex_cmd(state: "CliState", corpus: str, model: str | None, as_json: bool) -> None:
    """Embed every chunk of a corpus again (after a change of embedding model)."""
    out = Output()
    boundary.run(lambda: reindex(state, corpus, model, show=not as_json, out=out), as_json=as_json, state=state,
                 out=out)


@cli.command("query")
@click.argument("text")
@click.option("--corpus", required=True, help=_CORPUS_HELP)
@click.option("-k", "k", type=int, default=5, show_default=True, help=f"How many chunks (1..{MAX_K}).")
@click.option("--json", "as_json", is_flag=True,
              help="Print {corpus, query, chunks: [{rank, score, text, metadata}], embedding_model, ms}.")
@click.pass_obj
def query_cmd(state: "CliState", text: str, corpus: str, k: int, as_json: bool) -> None:
    """The chunks of a corpus closest to TEXT, ranked, with score, title and page."""
    boundary.run(lambda: query(state, text, corpus, k), as_json=as_json, state=state)


@cli.command("verify")
@click.argument("cid")
@click.option("--start", type=int, required=True, help="First character of the passage.")
@click.option("--end", type=int, required=True, help="One past its last character.")
@click.option("--page", type=int, help="The PDF page the range is in.")
@click.option("--text", help="The cited passage: it must equal the document's text at that range.")
@click.option("--json", "as_json", is_flag=True, help="Print {cid, start, end, page, verified, found, reason}.")
@click.pass_obj
def verify_cmd(state: "CliState", cid: str, start: int, end: int, page: int | None, text: str | None,
               as_json: bool) -> None:
    """Check a citation: fetch the document by its CID (verified chunk by chunk), extract
    its text as ingest did, and show (or, with --text, compare) the passage at
    [start:end]. Exit 0 if it matches, 1 if not."""
    boundary.run(lambda: verify(state, cid, start, end, page, text), as_json=as_json, state=state)
