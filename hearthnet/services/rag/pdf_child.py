"""PDF text extraction in a child process with CPU, memory and time bounds.

A PDF is a program as much as a document: a few kilobytes of compressed content stream,
shared by a thousand pages, cost pypdf hours of CPU (measured: 400 000 text operators,
4.7 KB on disk, 9 s of CPU for one page). PDFs reach the extractor from a member's
`rag.document.ingested` (auto-replication), from a peer's blob when a citation is
verified, and from the owner's own files. So pypdf never runs in the rag worker or the
CLI: each PDF is read by `python -m hearthnet.services.rag.pdf_child`, which limits its own
CPU time (RLIMIT_CPU: the kernel ends it) and address space (RLIMIT_AS: a MemoryError)
before it reads a byte, and the parent kills it if it outlives its wall-clock allowance.
What it returns is exactly what `extract_pdf` returns in process (the same code), so
citations point into the same text.

The parent's side is `extract.extract_pdf_bounded` (this module imports extract, never
the other way round). Protocol: msgpack on stdin {"data", "filename", "cpu_seconds"};
msgpack on stdout, either the Extracted {"kind", "units": [[text, page]], "title",
"pages_failed"} or {"error", "message"}.
"""
from __future__ import annotations

import sys
from typing import Any

import msgpack

from hearthnet.errors import HearthNetError
from hearthnet.services.rag.extract import Extracted, extract_pdf

MEMORY_BYTES = 1024 * 1024 * 1024  # address space of the child (pypdf and the document)


# --------------------------------------------------------------------------- the child


def _limit(cpu_seconds: float) -> None:
    import math
    import resource

    soft = max(1, math.ceil(cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))  # SIGXCPU at soft, SIGKILL at hard
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _encode(doc: Extracted) -> dict[str, Any]:
    return {"kind": doc.kind, "units": [[u.text, u.page] for u in doc.units], "title": doc.title,
            "pages_failed": doc.pages_failed}


def main() -> int:
    request = msgpack.unpackb(sys.stdin.buffer.read())
    _limit(float(request["cpu_seconds"]))
    name = request.get("filename") or "this document"
    try:
        out = _encode(extract_pdf(request["data"], request.get("filename")))
    except HearthNetError as exc:
        out = {"error": exc.code, "message": exc.message}
    except MemoryError:
        out = {"error": "bad_request", "message": f"{name} needs over {MEMORY_BYTES >> 20} MiB of memory to read "
                                                  "and was refused"}
    except Exception as exc:  # noqa: BLE001  pypdf failing on a hostile file is the file's fault, not a crash
        out = {"error": "bad_request", "message": f"{name} is not a readable PDF: {type(exc).__name__}: {exc}"[:500]}
    sys.stdout.buffer.write(msgpack.packb(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
