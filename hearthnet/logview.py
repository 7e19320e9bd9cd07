"""Reading the node's logs: every `<LOG>/*.log` is one component's log (supervisord
writes `<LOG>/<program>.log`, e.g. llm_00.log, gateway.log, broker.log), one JSON object
per line (`hearthnet.logs`). supervisord's own `supervisord.log` lines are read for their
time and level. Any other line that is not JSON (a traceback printed before logging was
set up) is kept as a raw record with level "error".

`LogReader.start(n)` gives the last n matching records of every file merged by
timestamp, reaching back into the files supervisord's size rotation moved away
(`<program>.log.1`, `.2`, ...) when the current one holds fewer; `LogReader.poll()` then returns what was appended since, behaving like
`tail -F`: it picks up files that appear later, reopens a file replaced by rotation
(new inode, after draining the old one) and starts over on a truncated file.
Standard library only.
"""
from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_ALIASES = {"warn": "warning", "fatal": "critical", "err": "error"}
_REPLICA = re.compile(r"^(?P<prefix>.+)_\d+$")
# supervisord's own log (<LOG>/supervisord.log): "2026-05-26 08:14:22,281 INFO spawned: ..."
_SUPERVISORD_LINE = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d),(?P<ms>\d{3}) "
    r"(?P<level>CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) (?P<msg>.*)$"
)
_SUPERVISORD_LEVELS = {"CRIT": "critical", "ERRO": "error", "WARN": "warning", "INFO": "info",
                       "DEBG": "debug", "TRAC": "debug", "BLAT": "debug"}
POLL_INTERVAL_SECONDS = 0.25


def normalise_level(level: Any) -> str:
    text = str(level or "info").lower()
    return _ALIASES.get(text, text)


def component_names(stem: str) -> tuple[str, ...]:
    """A file stem and, for a replica like llm_00, its program name llm."""
    m = _REPLICA.match(stem)
    return (stem, m.group("prefix")) if m else (stem,)


def _now_ts() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@dataclass
class LogRecord:
    ts: str
    level: str
    source: str  # the file stem: which component (worker instance) wrote it
    doc: dict[str, Any]
    raw: bool = False

    @property
    def logger(self) -> str:
        return str(self.doc.get("logger", ""))

    @property
    def msg(self) -> str:
        return str(self.doc.get("msg", ""))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.doc)
        out.update(ts=self.ts, level=self.level, source=self.source)
        out.setdefault("component", self.source)
        if self.raw:
            out["raw"] = True
        return out


def parse_line(line: str, source: str, last_ts: str) -> LogRecord:
    """One log line; non-JSON lines inherit the previous line's timestamp so they stay
    next to it when files are merged."""
    text = line.rstrip("\r\n")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "msg" in doc:
        ts = str(doc.get("ts") or last_ts)
        return LogRecord(ts=ts, level=normalise_level(doc.get("level")), source=source, doc=doc)
    m = _SUPERVISORD_LINE.match(text)
    if m:
        return LogRecord(ts=_supervisord_ts(m), level=_SUPERVISORD_LEVELS[m["level"]], source=source,
                         doc={"logger": "supervisord", "msg": m["msg"]})
    return LogRecord(ts=last_ts, level="error", source=source, doc={"logger": source, "msg": text}, raw=True)


@dataclass(frozen=True)
class LogFilter:
    min_level: str | None = None
    components: tuple[str, ...] = ()

    def matches(self, rec: LogRecord) -> bool:
        if self.min_level and LEVELS.get(rec.level, 20) < LEVELS.get(normalise_level(self.min_level), 0):
            return False
        if not self.components:
            return True
        names = set(component_names(rec.source))
        names.add(rec.logger)
        if rec.doc.get("component"):
            names.add(str(rec.doc["component"]))
        for want in self.components:
            if want in names or (rec.logger.startswith(want + ".")):
                return True
        return False


@dataclass
class _Tail:
    """One followed file: an open handle, where we are, and an unfinished last line."""

    path: Path
    fh: IO[bytes]
    ino: int
    pos: int = 0
    buf: bytes = b""
    last_ts: str = ""
    gone: bool = False  # the path no longer names this file (rotated or deleted)

    @property
    def source(self) -> str:
        return self.path.stem

    def read_lines(self, *, final: bool = False) -> list[str]:
        """Complete lines appended since the last read; `final` also returns an
        unterminated last line (the file was rotated away and will not grow)."""
        self.fh.seek(self.pos)
        data = self.fh.read()
        self.pos += len(data)
        data = self.buf + data
        *lines, rest = data.split(b"\n")
        self.buf = rest
        if final and rest:
            lines.append(rest)
            self.buf = b""
        return [ln.decode("utf-8", "replace") for ln in lines if ln.strip()]


@dataclass
class LogReader:
    log_dir: Path
    filt: LogFilter = field(default_factory=LogFilter)
    _tails: dict[Path, _Tail] = field(default_factory=dict)

    def files(self) -> list[Path]:
        try:
            return sorted(p for p in self.log_dir.glob("*.log") if p.is_file())
        except OSError:
            return []

    def start(self, n: int | None) -> list[LogRecord]:
        """Open every current file, read it through, and return the last `n` matching
        records across all files (None = all), oldest first."""
        per_file: list[Iterable[LogRecord]] = []
        for path in self.files():
            tail = self._open(path)
            if tail is None:
                continue
            keep: collections.deque[LogRecord] = collections.deque(maxlen=n)
            if n != 0:
                keep.extend(self._records(tail, tail.read_lines(), default_ts=_mtime_ts(path)))
            else:
                tail.pos = os.fstat(tail.fh.fileno()).st_size
            per_file.append(keep)
            if n is None or len(keep) < n:  # reach back into what rotation moved away
                per_file.append(self._rotated_records(path, None if n is None else n - len(keep)))
        merged = sorted((r for recs in per_file for r in recs), key=lambda r: r.ts)
        return merged if n is None else merged[-n:] if n else []

    def poll(self) -> list[LogRecord]:
        """What was written since the last call (tail -F semantics), merged by time."""
        out: list[LogRecord] = []
        for path in self.files():
            if path not in self._tails:
                tail = self._open(path)  # a file that appeared after we started: read it all
                if tail is not None:
                    out.extend(self._records(tail, tail.read_lines()))
        for path, tail in list(self._tails.items()):
            out.extend(self._poll_one(path, tail))
        out.sort(key=lambda r: r.ts)
        return out

    def close(self) -> None:
        for tail in self._tails.values():
            tail.fh.close()
        self._tails.clear()

    def follow(
        self,
        emit: Callable[[LogRecord], None],
        stop: threading.Event | None = None,
        interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        """Emit new records until `stop` is set (or forever; Ctrl-C is the caller's)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            for rec in self.poll():
                emit(rec)
            stop.wait(interval)

    # ------------------------------------------------------------------ internals

    def _rotated_records(self, path: Path, need: int | None) -> list[LogRecord]:
        """The last `need` matching records (None: all) of the files supervisord's size
        rotation moved away from `path` (`x.log.1` the newest, then `.2`, ...)."""
        out: list[LogRecord] = []
        for old in rotated_files(path):
            if need is not None and len(out) >= need:
                break
            try:
                text = old.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue  # pruned or rotated on meanwhile
            recs, last_ts = [], _mtime_ts(old)
            for line in text.splitlines():
                if line.strip():
                    rec = parse_line(line, path.stem, last_ts)
                    last_ts = rec.ts
                    if self.filt.matches(rec):
                        recs.append(rec)
            if need is not None:
                recs = recs[-(need - len(out)):]
            out = recs + out
        return out

    def _open(self, path: Path) -> _Tail | None:
        try:
            fh = open(path, "rb")
        except OSError:
            return None  # vanished between glob and open, or unreadable: next poll retries
        tail = _Tail(path=path, fh=fh, ino=os.fstat(fh.fileno()).st_ino)
        self._tails[path] = tail
        return tail

    def _poll_one(self, path: Path, tail: _Tail) -> list[LogRecord]:
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == tail.ino:
            if st.st_size < tail.pos:  # truncated in place (copytruncate): start over
                tail.pos, tail.buf = 0, b""
            return self._records(tail, tail.read_lines())
        # Rotated (another file now has the name) or deleted: finish the old file first.
        recs = self._records(tail, tail.read_lines(final=True))
        if st is None:
            if not tail.gone:
                tail.gone = True
            return recs
        tail.fh.close()
        del self._tails[path]
        new = self._open(path)
        if new is not None:
            new.last_ts = tail.last_ts
            recs.extend(self._records(new, new.read_lines()))
        return recs

    def _records(self, tail: _Tail, lines: list[str], default_ts: str = "") -> list[LogRecord]:
        out = []
        for line in lines:
            rec = parse_line(line, tail.source, tail.last_ts or default_ts or _now_ts())
            tail.last_ts = rec.ts
            if self.filt.matches(rec):
                out.append(rec)
        return out


def rotated_files(path: Path) -> list[Path]:
    """`<path>.1`, `<path>.2`, ... that exist, newest (lowest number) first."""
    try:
        found = [(int(p.name[len(path.name) + 1:]), p) for p in path.parent.glob(path.name + ".*")
                 if p.name[len(path.name) + 1:].isdigit()]
    except OSError:
        return []
    return [p for _, p in sorted(found)]


def _supervisord_ts(m: re.Match[str]) -> str:
    """supervisord writes local time; records are compared in UTC."""
    local = time.strptime(f"{m['date']} {m['time']}", "%Y-%m-%d %H:%M:%S")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.mktime(local))) + f".{m['ms']}Z"


def _mtime_ts(path: Path) -> str:
    """Timestamp for raw lines at the head of a file (no JSON line before them)."""
    try:
        t = path.stat().st_mtime
    except OSError:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
