"""Hardware detection, and the node profile and display name `init` and a join propose
(spec core-identity-config §6).

Sizes are decimal gigabytes (1 GB = 10**9 bytes), the unit RAM and disks are sold in, so
a "16 GB" laptop (about 15.5 GiB visible to the OS) still counts as 16 GB.
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Mapping

import psutil

GB = 1_000_000_000
DISPLAY_NAME_MAX = 64
NVIDIA_PROC = Path("/proc/driver/nvidia")


def _gpu_name(proc_root: Path = NVIDIA_PROC) -> str | None:
    """The NVIDIA driver's /proc tree, read without running nvidia-smi (which can hang
    for seconds on a busy or broken driver)."""
    if not proc_root.exists():
        return None
    for info in sorted((proc_root / "gpus").glob("*/information")):
        try:
            for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip() or "nvidia"
        except OSError:
            continue  # unreadable entry: the driver is still present
    return "nvidia"


def _existing_ancestor(path: Path) -> Path:
    # The data dir may not exist before `init`; measure the disk it will live on.
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def detect_hardware(data_dir: Path) -> dict[str, Any]:
    """The manifest's `hardware` object. vram_gb is 0.0: it is not measurable without
    vendor tools; the LLM worker reports real usage in `load`."""
    return {
        "gpu": _gpu_name(),
        "vram_gb": 0.0,
        "ram_gb": round(psutil.virtual_memory().total / GB, 1),
        "cpu_cores": psutil.cpu_count(logical=True) or 1,
        "disk_free_gb": round(psutil.disk_usage(str(_existing_ancestor(data_dir))).free / GB, 1),
    }


def detect_profile(hw: Mapping[str, Any]) -> str:
    """Rule, first match wins:
    - "spark" (thin client) if ram_gb < 3, or cpu_cores <= 2 and ram_gb < 4;
    - "anchor" (main provider) if there is a GPU, or ram_gb >= 16 and cpu_cores >= 8;
    - "hearth" otherwise.
    "bridge" is never proposed: it is a deliberate choice (relay-only node)."""
    ram = float(hw.get("ram_gb") or 0)
    cores = int(hw.get("cpu_cores") or 0)
    if ram < 3 or (cores <= 2 and ram < 4):
        return "spark"
    if hw.get("gpu") or (ram >= 16 and cores >= 8):
        return "anchor"
    return "hearth"


def default_display_name() -> str:
    """The node's proposed display name: this machine's short host name."""
    name = socket.gethostname().split(".")[0].strip()
    return name[:DISPLAY_NAME_MAX] or "hearthnet-node"
