from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from hearthnet.testing.llama_server import LlamaServer, launch_llama_server  # noqa: F401 (the fixtures use them)

# Long generations for the cancellation tests need a context far larger than the tiny
# model's 512 tokens; llama.cpp allows it (it only warns).
BIG_CTX = 16384


def llama_config(path: Path, *, ctx: int = 0, model: str = "tiny") -> SimpleNamespace:
    return SimpleNamespace(backends=[
        SimpleNamespace(name="llama_cpp", model_path=str(path), model=model, ctx=ctx,
                        url="", api_key_env="", max_concurrent=0, models=())
    ])


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real `python -m llama_cpp.server` on the tiny model (OpenAI-compatible API)."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with launch_llama_server(tiny_gguf, log, "--n_ctx", str(BIG_CTX)) as server:
        yield server
