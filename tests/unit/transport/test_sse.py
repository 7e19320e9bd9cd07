from __future__ import annotations

import pytest

from hearthnet.transport.sse import SseParser, format_frame

STREAM = (format_frame("token", {"text": "Hé"}) + b": keep-alive\n\n"
          + b"event: progress\r\ndata: {\"current\": 1,\r\ndata:  \"total\": 2}\r\n\r\n"
          + format_frame("done", {"tokens": 1}))
EXPECTED = [("token", {"text": "Hé"}), ("progress", {"current": 1, "total": 2}), ("done", {"tokens": 1})]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_frames_split_anywhere_parse_the_same(size):
    parser, frames = SseParser(), []
    for i in range(0, len(STREAM), size):
        frames += parser.feed(STREAM[i:i + size])
    assert frames == EXPECTED


def test_frame_without_event_is_message_and_blank_lines_alone_dispatch_nothing():
    assert SseParser().feed(b"\n\ndata: 5\n\n") == [("message", 5)]


def test_malformed_json_is_an_error():
    with pytest.raises(ValueError):
        SseParser().feed(b"event: token\ndata: {nope\n\n")


def test_overlong_line_is_an_error():
    parser = SseParser(max_line_bytes=16)
    with pytest.raises(ValueError):
        parser.feed(b"data: " + b"x" * 32)
