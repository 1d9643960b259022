"""A multipart/form-data body streamed from an iterator of blocks, with a known length.

The file part is never held in memory: the body is a generator that yields the
preamble, the source's blocks as they are read, and the epilogue, so a worker's
memory does not grow with the chunk size.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class MultipartBody:
    content_type: str
    length: int
    parts: Iterator[bytes]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def multipart_body(fields: Mapping[str, str], file_name: str, file_length: int,
                   blocks: Iterable[bytes], field_name: str = "file") -> MultipartBody:
    """Text ``fields`` first (as the official clients send them), then one file part."""
    boundary = "vuq" + secrets.token_hex(16)
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(field_name)}"; '
        f'filename="{_quote(file_name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def parts() -> Iterator[bytes]:
        yield head
        sent = 0
        for block in blocks:
            sent += len(block)
            yield block
        if sent != file_length:
            raise ValueError(f"the file part has {sent} bytes, {file_length} were announced")
        yield tail

    return MultipartBody(f"multipart/form-data; boundary={boundary}",
                         len(head) + file_length + len(tail), parts())
