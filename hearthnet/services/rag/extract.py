"""Text out of a document's bytes: PDF (per page), Markdown, HTML and plain text.

**The extracted text** is what chunk character ranges point into, so anyone holding the
blob can check a citation: `extract(blob_bytes, filename, mime).units[u].text[start:end]`
equals the passage (u = page - 1 for a PDF, 0 otherwise). It is deterministic for a
given HearthNet and pypdf version:

* every kind: line endings `\\r\\n` and `\\r` become `\\n`; nothing else is normalised;
* PDF: one unit per page, `pypdf.PdfPage.extract_text()` of that page (pages are never
  joined, so a chunk never spans pages); a page whose extraction fails counts as empty;
  read in a child process with CPU, memory and time bounds (pdf_child.py), same text;
* Markdown and plain text: the decoded file itself (UTF-8, a BOM dropped; bytes that are
  not UTF-8 are read as cp1252), markup included;
* HTML: the text our `_HtmlText` parser emits: no script/style/template/noscript/head,
  whitespace runs collapsed to one space, block elements separated by a blank line, `<br>`
  a line break, headings kept as their own paragraphs.

Markdown and HTML units carry *sections* (heading-delimited ranges with their heading
path), which the chunker never crosses.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.rag.extract")

KINDS = ("pdf", "markdown", "html", "text")
MIME_KINDS = {
    "application/pdf": "pdf", "application/x-pdf": "pdf",
    "text/markdown": "markdown", "text/x-markdown": "markdown",
    "text/html": "html", "application/xhtml+xml": "html",
    "text/plain": "text",
}
EXT_KINDS = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown",
             ".html": "html", ".htm": "html", ".xhtml": "html", ".txt": "text", ".text": "text"}
# Magic numbers of formats people will try and we cannot read, to name them in the error.
BINARY_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                b"PK\x03\x04": "a ZIP archive (e.g. .docx, .odt, .xlsx)", b"\x1f\x8b": "a gzip file",
                b"\xd0\xcf\x11\xe0": "an old Office document (.doc, .xls)"}
OCR_HINT = ("it looks scanned (no text layer in any page); run OCR first (e.g. `ocrmypdf in.pdf out.pdf`) "
            "and ingest the result")


def bad(message: str) -> HearthNetError:
    return HearthNetError("bad_request", message)


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    heading_path: tuple[str, ...] = ()


@dataclass
class Unit:
    """A PDF page, or the whole of any other document."""

    text: str
    page: int | None = None  # 1-based, PDFs only
    sections: list[Section] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sections:
            self.sections = [Section(0, len(self.text))]


@dataclass
class Extracted:
    kind: str
    units: list[Unit]
    title: str | None = None  # what the document calls itself (PDF metadata, <title>, first # heading)
    pages_failed: int = 0

    @property
    def pages(self) -> int:
        return len(self.units) if self.kind == "pdf" else 1


# --------------------------------------------------------------------------- type


def detect_kind(data: bytes, filename: str | None = None, mime: str | None = None) -> str:
    """pdf | markdown | html | text, from the bytes first, then the mime hint, then the
    name, then a look at the text. Anything else is `bad_request`."""
    if data[:5] == b"%PDF-" or data[:1024].lstrip()[:5] == b"%PDF-":
        return "pdf"
    for magic, what in BINARY_MAGIC.items():
        if data.startswith(magic):
            raise bad(f"unsupported document type: {what}; HearthNet reads PDF, Markdown, HTML and plain text")
    base = (mime or "").split(";")[0].strip().lower()
    kind = MIME_KINDS.get(base)
    if kind is None and filename:
        dot = filename.rfind(".")
        kind = EXT_KINDS.get(filename[dot:].lower()) if dot >= 0 else None
    if kind == "pdf":
        raise bad(f"{filename or 'the document'} is called a PDF but is not one (no %PDF- header)")
    if b"\x00" in data[:8192]:
        raise bad(f"unsupported document type ({base or 'binary data'}); HearthNet reads PDF, Markdown, "
                  "HTML and plain text")
    if kind is not None:
        return kind
    if base and not base.startswith("text/"):
        raise bad(f"unsupported document type {base}; HearthNet reads PDF, Markdown, HTML and plain text")
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"


def decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return normalise_newlines(text)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def extract(data: bytes, filename: str | None = None, mime: str | None = None, *,
            pdf_cpu_seconds: float | None = None) -> Extracted:
    """The document's text. A PDF is read in a bounded child process (at most
    `pdf_cpu_seconds` of CPU, default 60: extract_pdf_bounded), never by pypdf here."""
    kind = detect_kind(data, filename, mime)
    if kind == "pdf":
        return extract_pdf_bounded(data, filename, pdf_cpu_seconds or PDF_CPU_SECONDS)
    text = decode_text(data)
    if kind == "markdown":
        return extract_markdown(text)
    if kind == "html":
        return extract_html(text)
    return Extracted("text", [Unit(text)])


def passage(data: bytes, filename: str | None, mime: str | None, page: int | None, start: int, end: int) -> str:
    """The text a citation (page, [start, end)) points at in a blob: what a verifier
    compares with the cited passage. `bad_request` for a range the document lacks."""
    doc = extract(data, filename, mime)
    index = (page or 1) - 1
    if not 0 <= index < len(doc.units) or (page is None) != (doc.kind != "pdf"):
        raise bad(f"the document has no page {page}")
    text = doc.units[index].text
    if not 0 <= start <= end <= len(text):
        raise bad(f"characters {start}-{end} are outside the extracted text ({len(text)} characters)")
    return text[start:end]


# --------------------------------------------------------------------------- PDF

PDF_CPU_SECONDS = 60.0  # [rag] pdf_cpu_seconds: a long manual takes a few seconds
WALL_FACTOR, WALL_SLACK = 2.0, 15.0  # wall clock allowed: 2 x the CPU budget + start-up


def extract_pdf_bounded(data: bytes, filename: str | None, cpu_seconds: float = PDF_CPU_SECONDS) -> Extracted:
    """`extract_pdf(data, filename)`, run by `python -m hearthnet.services.rag.pdf_child`
    with its CPU, memory and wall time bounded (see pdf_child). `bad_request` for an
    unreadable PDF (the same as in process) and for one that costs more than the bounds."""
    import subprocess
    import sys

    import msgpack

    name = filename or "this document"
    payload = msgpack.packb({"data": data, "filename": filename, "cpu_seconds": cpu_seconds})
    wall = cpu_seconds * WALL_FACTOR + WALL_SLACK
    try:
        # -P: the working directory (the CLI's is the user's) is not put on sys.path, so a
        # stray msgpack.py or hearthnet/ there is never imported by the child.
        done = subprocess.run([sys.executable, "-P", "-m", "hearthnet.services.rag.pdf_child"], input=payload,
                              capture_output=True, timeout=wall, check=False)
    except subprocess.TimeoutExpired:  # run() has killed it
        raise bad(f"{name} took over {wall:g} s to read and was refused (a PDF this costly is not ingested)") from None
    if done.returncode != 0:
        raise bad(_child_died(name, done.returncode, cpu_seconds, done.stderr))
    return _from_child(done.stdout, name)


def _child_died(name: str, returncode: int, cpu_seconds: float, stderr: bytes) -> str:
    import signal

    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return (f"{name} needs over {cpu_seconds:g} s of CPU to read ([rag] pdf_cpu_seconds) and was refused "
                "(a PDF this costly is not ingested)")
    last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {returncode}"]
    return f"{name} could not be read: {last[0][:300]}"


def _from_child(raw: bytes, name: str) -> Extracted:
    import msgpack

    try:
        out = msgpack.unpackb(raw)
        if "error" in out:
            raise bad(str(out["message"]))
        units = [Unit(str(text), page=int(page)) for text, page in out["units"]]
        return Extracted(str(out["kind"]), units, title=out["title"], pages_failed=int(out["pages_failed"]))
    except (ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
        raise bad(f"{name} could not be read (the reader's answer was bad: {exc})") from None



def extract_pdf(data: bytes, filename: str | None = None) -> Extracted:
    import pypdf
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are about the file, not us
    name = filename or "this document"
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _unlocks_without_password(reader):
            raise bad(f"{name} is password-protected; remove the password and ingest it again")
        pages = list(reader.pages)
    except HearthNetError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError, NotImplementedError) as exc:
        raise bad(f"{name} is not a readable PDF (corrupt or truncated): {exc}") from None
    units, failed = [], 0
    for n, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # one broken page must not cost the others; deterministic all the same
            log.warning("a PDF page could not be read", extra={"page": n, "reason": str(exc)[:200]})
            text, failed = "", failed + 1
        units.append(Unit(normalise_newlines(text), page=n))
    if not pages:
        raise bad(f"{name} has no pages")
    if not any(u.text.strip() for u in units):
        raise bad(f"{name} has no text: {OCR_HINT}")
    return Extracted("pdf", units, title=_pdf_title(reader), pages_failed=failed)


def _unlocks_without_password(reader: Any) -> bool:
    """PDFs with only an owner password (print/copy restrictions) open with ""."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # unsupported crypto (e.g. AES without cryptography installed)
        return False


def _pdf_title(reader: Any) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # the info dict is optional: a damaged one costs the title, never the document
        return None
    return str(title).strip() or None if title else None


# --------------------------------------------------------------------------- Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def extract_markdown(text: str) -> Extracted:
    """Sections start at each heading line (ATX `#` or setext underlines) outside fenced
    code; a section runs to the next heading and carries the path of headings above it."""
    starts: list[tuple[int, int, str]] = []  # (offset, level, heading)
    offset, fence, prev_line, prev_off = 0, "", "", 0
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        m = _FENCE.match(bare)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = ""
        elif m:
            fence = m.group(1)
        elif (h := _ATX.match(bare)) is not None:
            starts.append((offset, len(h.group(1)), (h.group(2) or "").strip()))
        elif (s := _SETEXT.match(bare)) and prev_line.strip() and not _ATX.match(prev_line) \
                and not (starts and starts[-1][0] == prev_off):
            starts.append((prev_off, 1 if s.group(1)[0] == "=" else 2, prev_line.strip()))
        prev_line, prev_off = bare, offset
        offset += len(line)
    sections = _sections(starts, len(text))
    title = next((h for _, level, h in starts if level == 1 and h), None)
    return Extracted("markdown", [Unit(text, sections=sections)], title=title)


def _sections(starts: list[tuple[int, int, str]], length: int) -> list[Section]:
    """Heading offsets -> consecutive sections covering [0, length)."""
    out: list[Section] = []
    stack: list[tuple[int, str]] = []
    if not starts or starts[0][0] > 0:
        out.append(Section(0, starts[0][0] if starts else length))
    for k, (off, level, heading) in enumerate(starts):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        end = starts[k + 1][0] if k + 1 < len(starts) else length
        out.append(Section(off, end, tuple(h for _, h in stack if h)))
    return [s for s in out if s.end > s.start]


# --------------------------------------------------------------------------- HTML

_SKIP = {"script", "style", "template", "noscript", "head", "svg", "iframe", "object"}
_BLOCK = {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "ul", "ol",
          "li", "table", "tr", "thead", "tbody", "tfoot", "blockquote", "pre", "hr", "dl", "dt", "dd",
          "figure", "figcaption", "form", "fieldset", "address", "details", "summary", "caption"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
_WS = re.compile(r"\s+")


class _HtmlText(HTMLParser):
    """Visible text with paragraph breaks between blocks; heading offsets recorded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.length = 0
        self.skip = 0  # depth inside skipped elements
        self.pre = 0
        self.space = False  # a space is due before the next text
        self.newlines = 0  # line breaks due before the next text
        self.heading: tuple[int, int | None, list[str]] | None = None  # level, start, words
        self.starts: list[tuple[int, int, str]] = []
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _SKIP:
            self.skip += tag not in _VOID
            return
        if tag == "br":
            self.newlines = max(self.newlines, 1)
        elif tag in _HEADINGS:
            self._block()
            self.heading = (_HEADINGS[tag], None, [])
        elif tag in _BLOCK:
            self._block()
            self.pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _HEADINGS and self.heading is not None:
            level, start, words = self.heading
            if start is not None:
                self.starts.append((start, level, " ".join(words)))
            self.heading = None
            self._block()
        elif tag in _BLOCK:
            self._block()
            if tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.skip:
            return
        if self.pre:
            self._emit(normalise_newlines(data), raw=True)
            return
        if data[:1].isspace():
            self.space = True
        words = _WS.sub(" ", data).strip()
        if words:
            self._emit(words)
            if self.heading is not None:
                self.heading[2].append(words)
        if data[-1:].isspace():
            self.space = True

    def _block(self) -> None:
        self.newlines = 2

    def _emit(self, text: str, raw: bool = False) -> None:
        if not text:
            return
        if self.length:
            sep = "\n" * self.newlines if self.newlines else (" " if self.space and not raw else "")
            self._append(sep)
        if self.heading is not None and self.heading[1] is None:
            self.heading = (self.heading[0], self.length, self.heading[2])
        self._append(text)
        self.newlines, self.space = 0, False

    def _append(self, s: str) -> None:
        self.out.append(s)
        self.length += len(s)


def extract_html(text: str) -> Extracted:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    body = "".join(parser.out)
    title = _WS.sub(" ", "".join(parser.title)).strip() or None
    return Extracted("html", [Unit(body, sections=_sections(parser.starts, len(body)))], title=title)
