from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from hearthnet.testing.waiting import wait_for

# Long generations for the cancellation tests need a context far larger than the tiny
# model's 512 tokens; llama.cpp allows it (it only warns).
BIG_CTX = 16384


def llama_config(path: Path, *, ctx: int = 0, model: str = "tiny") -> SimpleNamespace:
    return SimpleNamespace(backends=[
        SimpleNamespace(name="llama_cpp", model_path=str(path), model=model, ctx=ctx,
                        url="", api_key_env="", max_concurrent=0, models=())
    ])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    url: str
    model: str
    proc: subprocess.Popen
    log: Path


@contextlib.contextmanager
def launch_llama_server(model: Path, log: Path, *extra: str) -> Iterator[LlamaServer]:
    """A real `python -m llama_cpp.server` on `model` (alias "tiny"), stopped on exit;
    `extra` are more server flags (the embedding tests add `--embedding true`)."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--model_alias", "tiny", "--host", "127.0.0.1", "--port", str(port), *extra],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"llama_cpp.server exited with {proc.returncode}:\n{tail()}"
        with urllib.request.urlopen(url + "/v1/models", timeout=1) as resp:  # refused: not yet
            return resp.status == 200

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:]

    try:
        wait_for(ready, 60, message=lambda: f"llama_cpp.server ready:\n{tail()}")
        yield LlamaServer(url=url, model="tiny", proc=proc, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real `python -m llama_cpp.server` on the tiny model (OpenAI-compatible API)."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with launch_llama_server(tiny_gguf, log, "--n_ctx", str(BIG_CTX)) as server:
        yield server
