"""A real `python -m llama_cpp.server` (OpenAI-compatible API) for tests: the LLM and
embedding backends' unit tests and the integration tests that switch a node's embedding
backend. Loopback only; always stopped."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hearthnet.testing.waiting import wait_for


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
