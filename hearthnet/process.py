"""What every worker process does first: load the node's config (HEARTHNET_CONFIG, set by
`hearthnet run`), set up JSON logging, learn its own name (HEARTHNET_WORKER_NAME).

A config that cannot be loaded ends the process with one plain log line (exit 78, the
sysexits "configuration error"); supervisord then shows the worker as BACKOFF/FATAL and
`hearthnet status` shows that line."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from hearthnet import logs
from hearthnet.bus import flow
from hearthnet.config import Config, load_config
from hearthnet.errors import HearthNetError

EXIT_CONFIG = 78


def start_process(component: str) -> tuple[Config, logging.Logger, str]:
    name = os.environ.get("HEARTHNET_WORKER_NAME", component)
    path = os.environ.get("HEARTHNET_CONFIG")
    try:
        cfg = load_config(Path(path) if path else None)
    except HearthNetError as exc:
        sys.stderr.write(json.dumps({"ts": logs.rfc3339_ms(time.time()),
                                     "level": "error", "component": name,
                                     "logger": f"hearthnet.{component}",
                                     "msg": f"cannot load config: {exc.message}"}) + "\n")
        sys.exit(EXIT_CONFIG)
    log = logs.configure(name, cfg.observability.log_level)
    flow.configure(cfg.bus.stream_stall_seconds)
    return cfg, log, name


def trim_heap() -> bool:
    """glibc malloc_trim(0), once a worker has started: the heap pages that starting up
    freed (config parsing, descriptors, TLS setup) go back to the system instead of
    staying with the process until reused; about 0.5 MiB of every worker (bench/memory.py,
    README "Lean processes"). False where this is not glibc."""
    import ctypes

    try:  # the process's own symbols: no ctypes.util.find_library, which runs ldconfig
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
