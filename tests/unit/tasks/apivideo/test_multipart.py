"""tasks.apivideo.multipart: a streamed multipart/form-data body with an exact length."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Iterator

import pytest

from tasks.apivideo.multipart import multipart_body


def parse(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes), parsed by the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        parts[str(part.get_param("name", header="content-disposition"))] = (part.get_filename(),
                                                                            bytes(part.get_payload(decode=True)))
    return parts


def test_body_parses_back_into_fields_and_file() -> None:
    data = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"
    blocks = [data[:1000], data[1000:5000], data[5000:]]
    body = multipart_body({"videoId": "vi123", "note": 'say "hi"'}, "my video.mp4", len(data), iter(blocks))
    raw = b"".join(body.parts)
    assert len(raw) == body.length
    assert body.content_type.startswith("multipart/form-data; boundary=vuq")
    assert parse(body.content_type, raw) == {
        "videoId": (None, b"vi123"),
        "note": (None, b'say "hi"'),
        "file": ("my video.mp4", data),
    }


def test_fields_come_before_the_file() -> None:
    body = multipart_body({"videoId": "vi1"}, "v.mp4", 3, [b"abc"])
    raw = b"".join(body.parts)
    assert raw.index(b'name="videoId"') < raw.index(b'name="file"')


def test_a_body_without_fields() -> None:
    body = multipart_body({}, "v.mp4", 4, [b"ab", b"cd"])
    raw = b"".join(body.parts)
    assert len(raw) == body.length
    assert parse(body.content_type, raw) == {"file": ("v.mp4", b"abcd")}


def test_the_body_is_streamed_block_by_block() -> None:
    produced: list[int] = []

    def blocks() -> Iterator[bytes]:
        for n in range(3):
            produced.append(n)
            yield b"x" * 10

    body = multipart_body({}, "v", 30, blocks())
    next(body.parts)  # the preamble
    assert produced == []
    assert next(body.parts) == b"x" * 10
    assert produced == [0]


def test_fewer_bytes_than_announced_raises() -> None:
    body = multipart_body({}, "v.mp4", 10, [b"12345"])
    with pytest.raises(ValueError, match="5 bytes, 10 were announced"):
        b"".join(body.parts)


def test_more_bytes_than_announced_raises() -> None:
    body = multipart_body({}, "v.mp4", 3, [b"12345"])
    with pytest.raises(ValueError, match="5 bytes, 3 were announced"):
        b"".join(body.parts)


def test_quotes_and_newlines_in_names_cannot_break_the_header() -> None:
    body = multipart_body({}, 'evil"\r\nX-Injected: 1.mp4', 1, [b"x"])
    raw = b"".join(body.parts)
    assert b"\r\nX-Injected" not in raw
    assert parse(body.content_type, raw)["file"][1] == b"x"
