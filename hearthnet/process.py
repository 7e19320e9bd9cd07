"""What every worker process does first: load the node's config (HEARTHNET_CONFIG, set by
`hearthnet run`), set up JSON logging, learn its own name (HEARTHNET_WORKER_NAME)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from hearthnet import logs
from hearthnet.config import Config, load_config


def start_process(component: str) -> tuple[Config, logging.Logger, str]:
    path = os.environ.get("HEARTHNET_CONFIG")
    cfg = load_config(Path(path) if path else None)
    name = os.environ.get("HEARTHNET_WORKER_NAME", component)
    log = logs.configure(name, cfg.observability.log_level)
    return cfg, log, name
