"""A tiny llama-architecture GGUF with random weights, written by hand (numpy + struct).

It is a real model file: llama.cpp (in-process through llama-cpp-python, or
`python -m llama_cpp.server`) loads it in milliseconds and generates tokens from it. The
text is meaningless (the weights are random); tests assert on structure, never on text.

Shape: hidden 64, 2 layers, 4 heads (4 KV heads), feed-forward 128, context length 512,
an SPM ("llama") vocabulary of `n_vocab` tokens: `<unk>`, `<s>`, `</s>`, the 256 byte
tokens `<0x00>`..`<0xFF>` (token type 6) and normal pieces ("▁the", letters, ...). All
tensors are F32; about 0.5 MB for the default vocabulary.

`tokenizer.chat_template` holds a small Zephyr-style Jinja template, so chat formatting
(ours and llama-cpp-python's `create_chat_completion`) uses the model's own template:

    <s><|user|>\\nHello</s>\\n<|assistant|>\\n

With `suppress_special=True` (the default) the output matrix gives `<unk>`, `<s>`, `</s>`
and the non-printable byte tokens a strongly negative logit: generation then never ends
on its own (its length is set by `max_tokens` or the context) and the text is printable
ASCII. Tests rely on that to have long generations to cancel. The trick: every token
embedding carries a large constant in dimension 0, so the final normalised hidden state
has a large positive component 0, and those tokens' output rows weigh it negatively.

CLI: `python -m hearthnet.testing.tiny_gguf OUT.gguf [--n-vocab N] [--seed S] [--context-length N]`.
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# GGUF metadata value types.
_T_UINT32 = 4
_T_INT32 = 5
_T_FLOAT32 = 6
_T_BOOL = 7
_T_STRING = 8
_T_ARRAY = 9

# ggml tensor type.
_GGML_F32 = 0

# tokenizer.ggml.token_type values (llama.cpp `llama_token_type`).
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_BYTE = 6

HIDDEN = 64
N_LAYERS = 2
N_HEADS = 4
N_HEADS_KV = 4
FFN = 128
CONTEXT_LENGTH = 512
N_SPECIAL = 3  # <unk>, <s>, </s>
N_BYTES = 256
MIN_VOCAB = N_SPECIAL + N_BYTES + 40

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = (
    "the of and to in is it you that he was for on are with as his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up "
    "use your how said an each she which do their time if will way about many then them "
    "write would like so these her long make thing see him two has look more day could "
    "go come did number sound no most people my over know water than call first who may "
    "down side been now find any new work part take get place made live where after back "
    "little only round man year came show every good me give our under name very through "
    "just form sentence great think say help low line differ turn cause much mean before "
    "move right boy old too same tell does set three want air well also play small end put "
    "home read hand port large spell add even land here must big high such follow act why "
    "ask men change went light kind off need house picture try us again animal point "
    "mother world near build self earth father head stand own page should country found "
    "answer school grow study still learn plant cover food sun four between state keep eye "
    "never last let thought city tree cross farm hard start might story saw far sea draw "
    "left late run while press close night real life few north open seem together next "
    "white children begin got walk example ease paper group always music those both mark "
    "often letter until mile river car feet care second book carry took science eat room "
    "friend began idea fish mountain stop once base hear horse cut sure watch color face "
    "wood main enough plain girl usual young ready above ever red list though feel talk "
    "bird soon body dog family direct pose leave song measure door product black short "
    "numeral class wind question happen complete ship area half rock order fire south "
    "problem piece told knew pass since top whole king space heard best hour better true "
    "during hundred five remember step early hold west ground interest reach fast verb "
    "sing listen six table travel less morning ten simple several vowel toward war lay "
    "against pattern slow center love person money serve appear road map rain rule govern "
    "pull cold notice voice unit power town fine certain fly fall lead cry dark machine"
).split()


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL]
    for b in range(N_BYTES):
        tokens.append(f"<0x{b:02X}>")
        types.append(TOKEN_BYTE)
    pieces: list[str] = ["▁"]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pieces += list("0123456789.,!?'-:;")
    pieces += ["▁" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + w for w in _WORDS]
    seen = set(tokens)
    for piece in pieces:
        if len(tokens) >= n_vocab:
            break
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(TOKEN_NORMAL)
    i = 0
    while len(tokens) < n_vocab:  # a larger vocabulary than the word list: bigrams
        piece = "▁" + chr(ord("a") + i // 26 % 26) + chr(ord("a") + i % 26) + ("x" * (i // 676))
        i += 1
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(TOKEN_NORMAL)
    scores = [0.0] * len(tokens)
    for idx, t in enumerate(types):
        if t == TOKEN_NORMAL:
            # SPM merges prefer higher scores: longer pieces first, then earlier ones.
            scores[idx] = float(len(tokens[idx])) * 10.0 - idx * 0.001
    return tokens, scores, types


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def u32(self, v: int) -> None:
        self.buf += struct.pack("<I", v)

    def u64(self, v: int) -> None:
        self.buf += struct.pack("<Q", v)

    def string(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.u64(len(raw))
        self.buf += raw

    def kv(self, key: str, vtype: int, value: Any) -> None:
        self.string(key)
        self.u32(vtype)
        self._value(vtype, value)

    def kv_array(self, key: str, etype: int, values: list[Any]) -> None:
        self.string(key)
        self.u32(_T_ARRAY)
        self.u32(etype)
        self.u64(len(values))
        if etype == _T_FLOAT32:
            self.buf += np.asarray(values, dtype="<f4").tobytes()
        elif etype == _T_INT32:
            self.buf += np.asarray(values, dtype="<i4").tobytes()
        else:
            for v in values:
                self._value(etype, v)

    def _value(self, vtype: int, value: Any) -> None:
        if vtype == _T_UINT32:
            self.u32(int(value))
        elif vtype == _T_INT32:
            self.buf += struct.pack("<i", int(value))
        elif vtype == _T_FLOAT32:
            self.buf += struct.pack("<f", float(value))
        elif vtype == _T_BOOL:
            self.buf += struct.pack("<?", bool(value))
        elif vtype == _T_STRING:
            self.string(str(value))
        else:
            raise ValueError(f"unsupported GGUF value type {vtype}")

    def pad(self) -> None:
        self.buf += b"\0" * (-len(self.buf) % ALIGNMENT)


def _weights(n_vocab: int, rng: np.random.Generator, suppress: list[int]) -> list[tuple[str, np.ndarray]]:
    """Tensors as numpy arrays whose C-order shape is the GGUF dims reversed
    (GGUF ne0 = innermost = numpy's last axis)."""

    def normal(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    head_dim = HIDDEN // N_HEADS
    kv_dim = head_dim * N_HEADS_KV
    embd = normal(n_vocab, HIDDEN)  # ne = [HIDDEN, n_vocab]
    embd[:, 0] = 4.0
    output = normal(n_vocab, HIDDEN, std=1.0)  # ne = [HIDDEN, n_vocab]
    output[:, 0] = 0.0
    output[suppress, 0] = -3.0
    tensors: list[tuple[str, np.ndarray]] = [
        ("token_embd.weight", embd),
        ("output_norm.weight", np.ones(HIDDEN, dtype=np.float32)),
        ("output.weight", output),
    ]
    for i in range(N_LAYERS):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", np.ones(HIDDEN, dtype=np.float32)),
            (p + "attn_q.weight", normal(HIDDEN, HIDDEN)),  # ne = [n_embd, n_head*head_dim]
            (p + "attn_k.weight", normal(kv_dim, HIDDEN)),  # ne = [n_embd, kv_dim]
            (p + "attn_v.weight", normal(kv_dim, HIDDEN)),
            (p + "attn_output.weight", normal(HIDDEN, HIDDEN)),
            (p + "ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32)),
            (p + "ffn_gate.weight", normal(FFN, HIDDEN)),  # ne = [n_embd, n_ff]
            (p + "ffn_up.weight", normal(FFN, HIDDEN)),  # ne = [n_embd, n_ff]
            (p + "ffn_down.weight", normal(HIDDEN, FFN)),  # ne = [n_ff, n_embd]
        ]
    return tensors


def write_tiny_llama_gguf(
    path: Path,
    *,
    n_vocab: int = 400,
    seed: int = 0,
    context_length: int = CONTEXT_LENGTH,
    suppress_special: bool = True,
    name: str = "tiny-llama",
    pooling_type: int | None = None,
) -> Path:
    """Write the tiny model to `path` (parents created) and return the path.
    `pooling_type` (llama.cpp's: 1 mean, 2 cls, 3 last) makes an embedding server answer
    one pooled vector per text instead of one per token."""
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"n_vocab must be at least {MIN_VOCAB}, got {n_vocab}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab(n_vocab)
    suppress: list[int] = []
    if suppress_special:
        suppress = [0, 1, 2] + [
            N_SPECIAL + b for b in range(N_BYTES) if not (0x20 <= b < 0x7F or b == 0x0A)
        ]
    tensors = _weights(n_vocab, rng, suppress)

    w = _Writer()
    w.buf += GGUF_MAGIC
    w.u32(GGUF_VERSION)
    w.u64(len(tensors))
    kvs: list[tuple[str, int, Any]] = [
        ("general.architecture", _T_STRING, "llama"),
        ("general.name", _T_STRING, name),
        ("general.alignment", _T_UINT32, ALIGNMENT),
        ("general.file_type", _T_UINT32, 0),  # all F32
        ("llama.context_length", _T_UINT32, context_length),
        ("llama.embedding_length", _T_UINT32, HIDDEN),
        ("llama.block_count", _T_UINT32, N_LAYERS),
        ("llama.feed_forward_length", _T_UINT32, FFN),
        ("llama.attention.head_count", _T_UINT32, N_HEADS),
        ("llama.attention.head_count_kv", _T_UINT32, N_HEADS_KV),
        ("llama.attention.layer_norm_rms_epsilon", _T_FLOAT32, 1e-5),
        ("llama.rope.dimension_count", _T_UINT32, HIDDEN // N_HEADS),
        ("llama.rope.freq_base", _T_FLOAT32, 10000.0),
        ("llama.vocab_size", _T_UINT32, n_vocab),
        ("tokenizer.ggml.model", _T_STRING, "llama"),
        ("tokenizer.ggml.bos_token_id", _T_UINT32, 1),
        ("tokenizer.ggml.eos_token_id", _T_UINT32, 2),
        ("tokenizer.ggml.unknown_token_id", _T_UINT32, 0),
        ("tokenizer.ggml.add_bos_token", _T_BOOL, True),
        ("tokenizer.ggml.add_eos_token", _T_BOOL, False),
        ("tokenizer.chat_template", _T_STRING, CHAT_TEMPLATE),
    ]
    if pooling_type is not None:
        kvs.append(("llama.pooling_type", _T_UINT32, pooling_type))
    w.u64(len(kvs) + 3)
    for key, vtype, value in kvs:
        w.kv(key, vtype, value)
    w.kv_array("tokenizer.ggml.tokens", _T_STRING, tokens)
    w.kv_array("tokenizer.ggml.scores", _T_FLOAT32, scores)
    w.kv_array("tokenizer.ggml.token_type", _T_INT32, types)

    offset = 0
    for tname, arr in tensors:
        w.string(tname)
        w.u32(arr.ndim)
        for dim in reversed(arr.shape):  # ne0 (innermost) first
            w.u64(dim)
        w.u32(_GGML_F32)
        w.u64(offset)
        offset += arr.nbytes
        offset += -offset % ALIGNMENT
    w.pad()
    for _, arr in tensors:
        w.buf += np.ascontiguousarray(arr, dtype="<f4").tobytes()
        w.pad()

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(w.buf))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hearthnet.testing.tiny_gguf",
        description="Write a tiny random-weight llama GGUF for tests and tutorials.",
    )
    parser.add_argument("out", type=Path, help="output .gguf path")
    parser.add_argument("--n-vocab", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-length", type=int, default=CONTEXT_LENGTH)
    args = parser.parse_args(argv)
    try:
        out = write_tiny_llama_gguf(
            args.out, n_vocab=args.n_vocab, seed=args.seed, context_length=args.context_length
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
