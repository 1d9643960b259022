"""What the pipeline reports as it goes (metrics and progress events plug in here). Each report says
whose job it is (``Whose``: its account and tenant), for metrics per account and tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Whose:
    """The account a job runs in (``token-only`` without a key) and the tenant whose share it takes."""

    account: str = "default"
    tenant: str = "default"


NOBODY_IN_PARTICULAR = Whose()


class Reporter(Protocol):
    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        """Chunk ``index`` (of ``total``) is streaming: ``streamed`` of its ``length`` bytes are out."""

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float,
                   whose: Whose = NOBODY_IN_PARTICULAR) -> None: ...

    def state(self, job_id: str, state: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None: ...

    def retry(self, job_id: str, reason: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None: ...


class NullReporter:
    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        pass

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float,
                   whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        pass

    def state(self, job_id: str, state: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        pass

    def retry(self, job_id: str, reason: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        pass


NULL_REPORTER: Reporter = NullReporter()
