"""What the pipeline reports as it goes (metrics and progress events plug in here)."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        """Chunk ``index`` (of ``total``) is streaming: ``streamed`` of its ``length`` bytes are out."""

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float) -> None: ...

    def state(self, job_id: str, state: str) -> None: ...

    def retry(self, job_id: str, reason: str) -> None: ...


class NullReporter:
    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        pass

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float) -> None:
        pass

    def state(self, job_id: str, state: str) -> None:
        pass

    def retry(self, job_id: str, reason: str) -> None:
        pass


NULL_REPORTER: Reporter = NullReporter()
