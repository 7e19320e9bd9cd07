"""Peak memory of node processes over a stretch of work, for the flow-control tests and
`bench/stream_flow.py`: Linux keeps each process's peak RSS (VmHWM); writing 5 to its
/proc/<pid>/clear_refs resets that peak to the current RSS, so "peak during the stream
minus RSS before it" is what the stream cost, with no sampling to miss a spike."""
from __future__ import annotations

import re
from pathlib import Path

import psutil

_PROGRAM = re.compile(r"^workers\.(?P<name>\w+)$")


def node_processes(root_pid: int) -> dict[str, int]:
    """Program name (broker, gateway, echo, ...) -> pid, for the workers under a node's
    `hearthnet run` process."""
    out: dict[str, int] = {}
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        for i, arg in enumerate(cmd[:-1]):
            m = _PROGRAM.match(cmd[i + 1]) if arg == "-m" else None
            if m:
                out[m.group("name")] = child.pid
    return out


def _status_kib(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakRss:
    """`start()` before the work, `growth()` after: per process, peak RSS during the work
    minus RSS at its start, in bytes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.before: dict[str, int] = {}

    def start(self) -> None:
        for name, pid in self.pids.items():
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            self.before[name] = _status_kib(pid, "VmRSS") * 1024

    def peaks(self) -> dict[str, int]:
        return {name: _status_kib(pid, "VmHWM") * 1024 for name, pid in self.pids.items()}

    def growth(self) -> dict[str, int]:
        return {name: peak - self.before[name] for name, peak in self.peaks().items()}


def own_rss() -> tuple[int, int]:
    """This process's (current, peak) RSS in bytes."""
    return _status_kib("self", "VmRSS") * 1024, _status_kib("self", "VmHWM") * 1024
