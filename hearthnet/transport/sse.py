"""Server-Sent Events framing (spec core-bus-transport §10).

    event: <name>
    data: <single-line JSON>
    <blank line>

`SseParser` is incremental: feed it bytes exactly as they arrive (a frame, a line or even
a multi-byte character may be split anywhere) and it returns the complete frames. It
follows the SSE rules the contract needs: `:` comment lines (keep-alives) are ignored,
several `data:` lines join with a newline, `id:`/`retry:` are ignored, a frame without
`event:` is named `message`, and lines end in LF or CRLF (a bare CR is not a line end
here; neither our server nor aiohttp emits one).

A peer's stream is hostile input: a line or a frame over its cap (MAX_SSE_LINE_BYTES,
MAX_SSE_FRAME_BYTES; the contract's frames are one line of JSON, the largest a 256 KiB
file chunk in base64) is a ValueError, which the client turns into a terminal `error`
frame and a closed connection.
"""
from __future__ import annotations

import json
from typing import Any

try:  # a file chunk's frame is ~350 kB of JSON: the stdlib takes ~2 ms to write it, orjson ~0.02
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None

TERMINAL_EVENTS = ("done", "error")
MAX_SSE_LINE_BYTES = 1024 * 1024
MAX_SSE_FRAME_BYTES = 1024 * 1024  # all the data lines of one frame together
MAX_EVENT_NAME = 64


def format_frame(event: str, data: Any) -> bytes:
    """One frame as the contract writes it (compact single-line JSON, UTF-8 as is)."""
    return b"".join((b"event: ", event.encode("utf-8"), b"\ndata: ", dumps_bytes(data), b"\n\n"))


def dumps_bytes(data: Any) -> bytes:
    """Compact JSON in UTF-8, the same bytes as json.dumps(ensure_ascii=False,
    separators=(",", ":")) writes; orjson when installed, the stdlib for what orjson
    refuses (keys that are not strings, integers beyond 64 bits). One difference: a
    float NaN or infinity becomes null (the stdlib writes NaN, which is not JSON)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(data)
        except TypeError:
            pass
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(raw: str) -> Any:
    """json.loads, through orjson when installed (faster on long strings); what orjson
    refuses (NaN, integers beyond 64 bits, nesting past 1 024) goes to the stdlib, so
    both accept exactly the same input."""
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(raw)


class SseParser:
    def __init__(self, max_line_bytes: int = MAX_SSE_LINE_BYTES,
                 max_frame_bytes: int = MAX_SSE_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._max = max_line_bytes
        self._max_frame = max_frame_bytes

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        """Frames completed by `chunk`; ValueError on a malformed frame or an over-long
        line (a peer that never sends a newline must not grow our memory forever)."""
        if b"\n" not in chunk:  # mid-line: just collect (no re-splitting of a long line)
            self._buf.extend(chunk)
            self._check_size()
            return []
        # Lines are decoded straight out of the buffer: a chunk's frame is one ~350 kB
        # line, and every copy of it costs (splitting the joined buffer took ~0.4 ms).
        buf = self._buf
        buf.extend(chunk)
        frames, start = [], 0
        with memoryview(buf) as view:
            while (nl := buf.find(b"\n", start)) >= 0:
                end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl
                frame = self._line(view, start, end)
                if frame is not None:
                    frames.append(frame)
                start = nl + 1
        del buf[:start]  # the unfinished tail stays (empty after a newline)
        self._check_size()
        return frames

    def _check_size(self) -> None:
        if len(self._buf) > self._max:
            raise ValueError(f"SSE line longer than {self._max} bytes")

    def _line(self, view: memoryview, start: int, end: int) -> tuple[str, Any] | None:
        """The line view[start:end] (without its line end)."""
        size = end - start
        if size > self._max:  # a long line that arrived in one chunk with its newline
            raise ValueError(f"SSE line longer than {self._max} bytes")
        if size == 0:
            return self._dispatch()
        if view[start] == 0x3A:  # ":" a comment (keep-alive); still only UTF-8 is accepted
            _decode(view, start, end)
            return None
        if view[start:start + 6] == b"data: ":  # the usual data line: one copy of the value
            _decode(view, start, start + 6)
            name, value = "data", _decode(view, start + 6, end)
        else:
            name, _, value = _decode(view, start, end).partition(":")
            value = value[1:] if value.startswith(" ") else value
        if name == "event":
            if len(value) > MAX_EVENT_NAME:
                raise ValueError(f"SSE event name longer than {MAX_EVENT_NAME} characters")
            self._event = value
        elif name == "data":
            self._data_bytes += size + 1
            if self._data_bytes > self._max_frame:
                raise ValueError(f"SSE frame larger than {self._max_frame} bytes")
            self._data.append(value)
        return None

    def _dispatch(self) -> tuple[str, Any] | None:
        event, data = self._event or "message", self._data
        self._event, self._data, self._data_bytes = "", [], 0
        if not data:
            return None  # SSE: a blank line after no data dispatches nothing
        try:
            return event, loads("\n".join(data))
        except RecursionError:
            raise ValueError(f"SSE frame {event!r} is nested too deep") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"SSE frame {event!r} does not carry JSON: {exc}") from None


def _decode(view: memoryview, start: int, end: int) -> str:
    """Complete lines only are decoded, so no character is ever split."""
    try:
        return str(view[start:end], "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"SSE line is not UTF-8: {exc}") from None
