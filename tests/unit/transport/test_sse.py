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


@pytest.mark.parametrize("stream", [
    b"data: " + b"x" * 40 + b"\n\n",  # one long line that arrives with its newline
    b"data: 1\n" * 10 + b"\n",  # many short data lines: the frame is over its cap
    b"event: " + b"e" * 100 + b"\ndata: 1\n\n",  # an absurd event name
    b"data: \xff\xfe\n\n",  # not UTF-8
    b"data: " + b"[" * 5000 + b"\n\n",  # nested deeper than json parses
])
def test_hostile_streams_are_errors_not_crashes(stream):
    parser = SseParser(max_line_bytes=32, max_frame_bytes=32) if len(stream) < 1000 else SseParser()
    with pytest.raises(ValueError):
        for i in range(0, len(stream), 7):  # split anywhere, as the network does
            parser.feed(stream[i:i + 7])
        parser.feed(b"\n\n")


def test_default_caps_fit_a_file_chunk_frame():
    chunk = '{"i":0,"cid":"blake3:' + "0" * 64 + '","size_bytes":262144,"data_b64":"' + "A" * 349_526 + '"}'
    assert SseParser().feed(f"event: chunk\ndata: {chunk}\n\n".encode())[0][0] == "chunk"
