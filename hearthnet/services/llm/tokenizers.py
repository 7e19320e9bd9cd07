"""Approximate token counts for backends that do not report usage (svc-llm §1.7):
chars/3.5 for Latin-script text, chars/2 for CJK."""
from __future__ import annotations

import math
import re

_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)


def count_tokens_approx(text: str) -> int:
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    other = len(text) - cjk
    return max(1, math.ceil(other / 3.5 + cjk / 2))


def model_family(model: str) -> str:
    """`"qwen2.5-7b-instruct"` -> `"qwen"`, `"llama-3-8b"` -> `"llama"`."""
    m = re.match(r"[a-zA-Z]+", model.strip())
    return m.group(0).lower() if m else "unknown"
