"""PDFs are read in a bounded child (hearthnet/services/rag/pdf_child.py): the same text as
pypdf in process, and a hostile PDF (a tiny file whose pages all draw one costly content
stream) refused with `bad_request` once it has used its CPU budget."""
from __future__ import annotations

import io
import time

import msgpack
import pytest

pytest.importorskip("pypdf")

from hearthnet.errors import HearthNetError  # noqa: E402
from hearthnet.services.rag import pdf_child  # noqa: E402
from hearthnet.services.rag import extract as extract_mod  # noqa: E402
from hearthnet.services.rag.extract import extract, extract_pdf  # noqa: E402
from hearthnet.testing.pdfs import costly_pdf, make_pdf  # noqa: E402


def test_the_child_reads_exactly_what_pypdf_reads_in_process():
    data = make_pdf([["Boil water for one minute.", "Then let it cool."], ["Page two (with parens)."]],
                    title="Water safety")
    child, here = extract(data, "water.pdf"), extract_pdf(data, "water.pdf")
    assert child == here
    assert [u.page for u in child.units] == [1, 2] and child.title == "Water safety"


def test_a_costly_pdf_is_refused_when_its_cpu_budget_is_spent():
    data = costly_pdf(pages=50, operators=100_000)
    assert len(data) < 20_000  # small on disk: the cost is in what its pages draw
    t0 = time.monotonic()
    with pytest.raises(HearthNetError) as err:
        extract(data, "flyer.pdf", pdf_cpu_seconds=1)
    assert err.value.code == "bad_request"
    assert "flyer.pdf needs over 1 s of CPU" in err.value.message and "pdf_cpu_seconds" in err.value.message
    assert time.monotonic() - t0 < 60  # ended by its limit, not by reading 50 costly pages


def test_an_unreadable_pdf_gets_the_same_error_as_in_process():
    data = make_pdf([["x"]])[:200]
    with pytest.raises(HearthNetError) as here:
        extract_pdf(data, "cut.pdf")
    with pytest.raises(HearthNetError) as child:
        extract(data, "cut.pdf")
    assert (child.value.code, child.value.message) == (here.value.code, here.value.message)


def test_the_child_reports_running_out_of_memory_and_any_reader_failure(monkeypatch, capsysbinary):
    def run(fail: BaseException) -> dict:
        def boom(data, filename):
            raise fail

        monkeypatch.setattr(pdf_child, "_limit", lambda cpu: None)
        monkeypatch.setattr(pdf_child, "extract_pdf", boom)
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(msgpack.packb(
            {"data": b"%PDF-", "filename": "big.pdf", "cpu_seconds": 5}))))
        assert pdf_child.main() == 0
        return msgpack.unpackb(capsysbinary.readouterr().out)

    assert run(MemoryError()) == {"error": "bad_request",
                                  "message": "big.pdf needs over 1024 MiB of memory to read and was refused"}
    out = run(AssertionError("pypdf lost its way"))
    assert out["error"] == "bad_request" and "AssertionError: pypdf lost its way" in out["message"]


def test_a_child_that_dies_or_answers_garbage_is_a_clear_error(monkeypatch):
    class Done:
        def __init__(self, returncode: int, stdout: bytes = b"", stderr: bytes = b"") -> None:
            self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    monkeypatch.setattr("subprocess.run", lambda *a, **k: Done(1, stderr=b"Traceback\nOSError: boom\n"))
    with pytest.raises(HearthNetError, match="x.pdf could not be read: OSError: boom"):
        extract_mod.extract_pdf_bounded(b"%PDF-", "x.pdf")
    monkeypatch.setattr("subprocess.run", lambda *a, **k: Done(0, stdout=b"\xc1 not msgpack"))
    with pytest.raises(HearthNetError, match="the reader's answer was bad"):
        extract_mod.extract_pdf_bounded(b"%PDF-", "x.pdf")


def test_a_stray_module_in_the_working_directory_is_never_imported_by_the_child(tmp_path, monkeypatch):
    # `hearthnet rag verify` runs in whatever directory the user stands in
    (tmp_path / "msgpack.py").write_text("raise SystemExit('a stray msgpack.py was imported')\n")
    monkeypatch.chdir(tmp_path)
    doc = extract(make_pdf([["Fill the bath with water."]]), "bath.pdf")
    assert doc.units[0].text.startswith("Fill the bath")
