from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llama_cpp
import pytest

from hearthnet.services.llm.backends.llama_cpp import read_gguf_metadata
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf


def test_tiny_gguf_header(tiny_gguf: Path) -> None:
    size = tiny_gguf.stat().st_size
    assert 300_000 < size < 1_000_000
    meta = read_gguf_metadata(tiny_gguf)
    assert meta["general.architecture"] == "llama"
    assert meta["general.alignment"] == 32
    assert meta["llama.context_length"] == 512
    assert meta["llama.embedding_length"] == 64
    assert meta["llama.block_count"] == 2
    assert meta["llama.attention.head_count"] == 4
    assert meta["tokenizer.ggml.model"] == "llama"
    assert "{{ bos_token }}" in meta["tokenizer.chat_template"]


def test_tiny_gguf_loads_in_llama_cpp(tiny_gguf: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=0, verbose=False)
    try:
        assert llm.n_vocab() == 400
        assert llm.n_ctx() == 512
        assert llm.token_bos() == 1 and llm.token_eos() == 2
        toks = llm.tokenize(b"the world", add_bos=True)
        assert toks[0] == 1 and len(toks) > 1
        assert llm.detokenize(toks[1:]).decode().strip() == "the world"
        # a non-ASCII character falls back to the byte tokens <0xC3> <0xA9>
        assert llm.tokenize("é".encode(), add_bos=False)[-2:] == [3 + 0xC3, 3 + 0xA9]
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1
        )
        assert out["usage"]["completion_tokens"] == 8
    finally:
        llm.close()


def test_tiny_gguf_is_deterministic(tmp_path: Path) -> None:
    a = write_tiny_llama_gguf(tmp_path / "a.gguf", seed=3)
    b = write_tiny_llama_gguf(tmp_path / "b.gguf", seed=3)
    c = write_tiny_llama_gguf(tmp_path / "c.gguf", seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_tiny_gguf_rejects_a_too_small_vocab(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_vocab"):
        write_tiny_llama_gguf(tmp_path / "x.gguf", n_vocab=100)


def test_tiny_gguf_cli(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "cli.gguf"
    proc = subprocess.run(
        [sys.executable, "-m", "hearthnet.testing.tiny_gguf", str(out), "--n-vocab", "320"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    assert read_gguf_metadata(out)["llama.vocab_size"] == 320
