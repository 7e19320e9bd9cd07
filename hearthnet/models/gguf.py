"""Is this file a model llama.cpp can run? Checked before config.toml names it.

Two steps, cheapest first:
1. `inspect_gguf`: parse the whole GGUF header (magic, version, every metadata key and
   every tensor description) and check that the file is long enough to hold every tensor
   the header promises. A file that is not GGUF, or was cut short by an interrupted copy or
   download, is refused here with the reason, without loading anything.
2. `load_check`: ask llama.cpp itself to open the file with `vocab_only=True` in a child
   process (a crash or a hang cannot take the CLI with it; a timeout bounds it). That reads
   the architecture, hyper-parameters and vocabulary but no weights, so it is quick even
   for a 4 GB file, and it is the honest answer to "can this llama.cpp load it". Without
   the `llama` extra installed the check is skipped, and the result says so.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hearthnet.errors import HearthNetError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Sanity bounds: a header claiming more is damaged, and parsing it would eat memory.
MAX_KV = 1_000_000
MAX_TENSORS = 1_000_000
MAX_STRING = 64 * 1024 * 1024
MAX_DIMS = 8

# Metadata value types -> struct format (8 = string, 9 = array are handled apart).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
_T_STRING, _T_ARRAY = 8, 9

# ggml tensor type -> (elements per block, bytes per block) (ggml.h / gguf-py constants).
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136),
    24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56),
    30: (1, 2), 34: (256, 54), 35: (256, 66),
}

# The child process of `load_check`: prints "ok" or llama.cpp's own error line.
_LOAD_SCRIPT = r"""
import sys
try:
    import llama_cpp
except ImportError:
    print("missing"); sys.exit(3)
try:
    llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=True)  # logs to stderr
except Exception as exc:
    print(exc); sys.exit(1)
print("ok")
"""


def refused(message: str, **details: Any) -> HearthNetError:
    """Bad input from the user's file: exit 2, config untouched."""
    return HearthNetError("bad_request", message, **details)


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    size: int
    version: int
    tensor_count: int
    kv_count: int
    architecture: str
    context_length: int  # 0 when the file does not say
    name: str  # general.name, "" when absent
    file_type: int | None
    data_end: int  # the end of the last tensor; <= size
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "size": self.size, "version": self.version,
                "tensor_count": self.tensor_count, "kv_count": self.kv_count,
                "architecture": self.architecture, "context_length": self.context_length,
                "name": self.name, "file_type": self.file_type}


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise refused(f"{self.path}: truncated GGUF file (the header ends early at byte "
                          f"{self.f.tell()}); copy or download it again", reason="truncated")
        return b

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise refused(f"{self.path}: damaged GGUF header (a {n}-byte string)", reason="damaged")
        return self.read(n).decode("utf-8", errors="replace")

    def skip(self, n: int) -> None:
        self.f.seek(n, 1)

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype == _T_STRING:
            return self.string()
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _T_ARRAY and depth == 0:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:  # large arrays (scores, merges) are skipped, not parsed
                self.skip(struct.calcsize(_SCALAR[etype]) * count)
            else:
                for _ in range(count):
                    self.value(etype, depth + 1)
            return None
        raise refused(f"{self.path}: damaged GGUF header (value type {vtype})", reason="damaged")


def inspect_gguf(path: Path) -> GgufInfo:
    """Parse and check the header; raise bad_request with the reason when the file is not
    a whole GGUF v2/v3 model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise refused(f"{path}: no such file", reason="missing")
    size = path.stat().st_size
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if f.read(4) != GGUF_MAGIC:
            raise refused(f"{path} is not a GGUF model file (it does not start with 'GGUF')",
                          reason="not_gguf")
        version = r.unpack("<I")
        if version not in SUPPORTED_VERSIONS:
            raise refused(f"{path}: GGUF version {version} is not supported (2 or 3)", reason="version")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
            raise refused(f"{path}: damaged GGUF header ({n_tensors} tensors, {n_kv} keys)",
                          reason="damaged")
        meta = _read_metadata(r, n_kv)
        data_end = _read_tensors(r, n_tensors, meta, f)
    if data_end > size:
        raise refused(f"{path}: truncated GGUF file ({size} bytes; its tensors need {data_end}); "
                      "copy or download it again", reason="truncated")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise refused(f"{path}: the GGUF file names no general.architecture", reason="no_architecture")
    ctx = meta.get(f"{arch}.context_length")
    return GgufInfo(path=path, size=size, version=version, tensor_count=n_tensors, kv_count=n_kv,
                    architecture=arch, context_length=int(ctx) if isinstance(ctx, int) else 0,
                    name=str(meta.get("general.name") or ""),
                    file_type=meta.get("general.file_type"), data_end=data_end, metadata=meta)


def _read_metadata(r: _Reader, n_kv: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    return meta


def _read_tensors(r: _Reader, n_tensors: int, meta: dict[str, Any], f: BinaryIO) -> int:
    """Read every tensor description; the byte offset where the last tensor ends."""
    end = 0
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > MAX_DIMS:
            raise refused(f"{r.path}: damaged GGUF header (tensor {name} has {n_dims} dims)",
                          reason="damaged")
        elements = 1
        for _ in range(n_dims):
            elements *= r.unpack("<Q")
        ttype, offset = r.unpack("<I"), r.unpack("<Q")
        block, nbytes = GGML_TYPES.get(ttype, (1, 0))  # an unknown type: its offset only
        end = max(end, offset + elements // block * nbytes)
    align = meta.get("general.alignment")
    align = align if isinstance(align, int) and align > 0 else DEFAULT_ALIGNMENT
    data_start = f.tell() + (-f.tell() % align)
    return data_start + end


# --------------------------------------------------------------------------- load check


@dataclass(frozen=True)
class LoadCheck:
    status: str  # "ok" | "skipped"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail}


def load_check(info: GgufInfo, timeout: float = 120.0) -> LoadCheck:
    """llama.cpp opens the file (vocabulary only) in a child process. Raises bad_request
    with llama.cpp's reason when it cannot (e.g. an unknown architecture)."""
    try:
        proc = subprocess.run([sys.executable, "-P", "-c", _LOAD_SCRIPT, str(info.path)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise refused(f"{info.path}: llama.cpp did not open the file within {timeout:g} s",
                      reason="load_timeout") from None
    answer = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode == 3 and answer == "missing":
        return LoadCheck("skipped", "load check skipped: llama-cpp-python is not installed "
                         "(pip install 'hearthnet[llama]'); the header is valid")
    if proc.returncode == 0 and answer == "ok":
        return LoadCheck("ok", f"llama.cpp can load this {info.architecture} model")
    # llama.cpp's own reason ("unknown model architecture: 'x'") is on its log, stderr.
    why = [line.split("error loading model:", 1)[1].strip()
           for line in proc.stderr.splitlines() if "error loading model:" in line]
    why = why[0] if why else (answer or f"the loader exited with {proc.returncode}")
    raise refused(f"{info.path}: llama.cpp cannot load this model "
                  f"(architecture {info.architecture!r}): {why}", reason="unsupported")


def validate_model_file(path: Path, timeout: float = 120.0) -> tuple[GgufInfo, LoadCheck]:
    info = inspect_gguf(path)
    return info, load_check(info, timeout)
