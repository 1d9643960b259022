"""A stand-in for a recorder writing a file while it is being uploaded (live jobs' tests, ``bench.live``).

``Recorder`` appends ``size`` deterministic bytes to ``path`` from a thread, at ``bytes_per_s`` (0: as
fast as it can), in blocks, flushing each; ``sha256`` is the digest of the whole file once written.
``hold`` pauses it after a given number of bytes until ``release``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

BLOCK_BYTES = 256 * 1024


def pattern(offset: int, length: int, seed: int = 0) -> bytes:
    """The recorder's bytes from ``offset`` (the same ones for the same seed, whoever asks)."""
    out = bytearray()
    block = offset // 4096
    while len(out) < length + offset % 4096:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest() * 128
        block += 1
    start = offset % 4096
    return bytes(out[start:start + length])


class Recorder:
    """Appends ``size`` bytes to ``path`` at ``bytes_per_s`` from a thread; ``hold_at`` bytes (if given)
    are written, then it waits for ``release``."""

    def __init__(self, path: Path, size: int, bytes_per_s: float = 0.0, seed: int = 0,
                 hold_at: int | None = None, create: bool = True) -> None:
        self.path, self.size, self.bytes_per_s, self.seed = path, size, bytes_per_s, seed
        self.hold_at = hold_at
        self.written = 0
        self.ended_at: float | None = None  # time.time() when the last byte was flushed
        self._released = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"recorder-{path.name}", daemon=True)
        if create:
            path.write_bytes(b"")

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for offset in range(0, self.size, BLOCK_BYTES):
            digest.update(pattern(offset, min(BLOCK_BYTES, self.size - offset), self.seed))
        return digest.hexdigest()

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def release(self) -> None:
        self._released.set()

    def join(self, timeout_s: float) -> None:
        """Wait until every byte is written; raises what the writer raised."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the recorder of {self.path.name} did not finish in {timeout_s:.0f} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        began = time.monotonic()
        try:
            with open(self.path, "ab", buffering=0) as out:
                while self.written < self.size:
                    if self.hold_at is not None and self.written >= self.hold_at:
                        self._released.wait()
                        self.hold_at = None
                        if self.bytes_per_s:  # the pace goes on from here, not from before the hold
                            began = time.monotonic() - self.written / self.bytes_per_s
                    stop = self.size if self.hold_at is None else min(self.size, self.hold_at)
                    length = min(BLOCK_BYTES, stop - self.written)
                    out.write(pattern(self.written, length, self.seed))
                    self.written += length
                    if self.bytes_per_s:
                        ahead = began + self.written / self.bytes_per_s - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)  # pacing the writer, not synchronisation
            self.ended_at = time.time()
        except BaseException as exc:  # handed to join()
            self._error = exc
