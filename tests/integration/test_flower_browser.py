"""What an operator sees in Flower's task list, in a real headless browser, while uploads run.

Debian's Chromium, driven by Playwright (``tests.support.flower_page``), opens ``vuq flower``'s
``/tasks`` with basic auth, then three uploads and one job that cannot start are enqueued, and the
table is read (reloaded until it shows them) while the uploads are still in flight: each upload's
title next to its chunk 'k/n', and the failure's exception type and reason.

``VUQ_SCREENSHOT=docs/flower-tasks.png`` also writes the README's screenshot of that page, at the
moment the table is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.flower_page import (
    Row,
    browser_missing,
    flower_browser,
    open_tasks,
    page_text,
    save_screenshot,
    visible_rows,
    wait_for_rows,
)
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from workers.lab.services import start_flower

pytestmark = pytest.mark.integration

AUTH = ("ops", "flower-browser-5e2")
CHUNK_SIZE = 5 * MIB
# Three uploads of a few 5 MiB chunks each (4, 4 and 3), and one that cannot start.
UPLOADS = {"Keynote": 18 * MIB, "Panel": 17 * MIB, "Workshop": 12 * MIB}
FAILING_TITLE = "Empty recording"
EMPTY_REASON = "the source is empty (0 bytes)"
# Every emulator request waits this long, so a job takes a few seconds (about 8 requests in a row)
# and the page is read mid-upload.
LATENCY_MS = "500,500"
CHUNK = re.compile(r"'chunk': '(\d+)/(\d+)'")


@dataclass(frozen=True)
class Seen:
    """Flower's task list as read once, during the uploads."""

    rows: list[Row]  # each cell's whole text, as rendered
    visible: list[Row]  # each cell's text that is not clipped, at a 1400 px wide window
    text: str  # the page's text
    running: list[str]  # the uploads that had not ended when the page had been read
    jobs: dict[str, str]  # title: job id
    failing: str  # the job id of the empty source


@pytest.fixture(scope="module")
def browser_ready() -> None:
    """Skip without Playwright or Chromium; under CI=true their absence is a failure (as for Redis)."""
    missing = browser_missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs a headless Chromium for Flower's page: {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def slow_stack(browser_ready: None, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """The emulator (slow on purpose) and two worker processes."""
    tmp = Path(tmp_path_factory.mktemp("flower-browser"))
    (tmp / "logs").mkdir()
    with running_stack(tmp, redis_url, workers=2, emulator_args=("--latency-ms", LATENCY_MS)) as stack:
        yield stack


@pytest.fixture(scope="module")
def flower_url(slow_stack: Stack) -> Iterator[str]:
    """``vuq flower`` with basic auth (from VUQ_FLOWER_BASIC_AUTH) on a free loopback port."""
    port = free_port()
    env = {**slow_stack.env, "VUQ_FLOWER_BASIC_AUTH": ":".join(AUTH)}
    flower = start_flower(env, slow_stack.log_dir, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        flower.stop()


@pytest.fixture(scope="module")
def seen(slow_stack: Stack, flower_url: str) -> Seen:
    """Open the task list first, then enqueue, then read the table once it shows every upload's
    chunk k/n and the failure, while the uploads still run (optionally saving a screenshot)."""
    empty = slow_stack.root / "empty.mp4"
    empty.write_bytes(b"")
    sources = {title: slow_stack.file(f"{title.lower()}.mp4", size, seed)[0]
               for seed, (title, size) in enumerate(UPLOADS.items(), start=90)}
    with flower_browser(flower_url, AUTH) as page:
        open_tasks(page)
        jobs = {title: slow_stack.enqueue(path, chunk_size="5MiB", video={"title": title, "tags": ["conf"]})
                for title, path in sources.items()}
        failing = slow_stack.enqueue(empty, chunk_size="5MiB", video={"title": FAILING_TITLE})
        rows = wait_for_rows(page, _everything_shown, timeout_s=20)
        visible, text = visible_rows(page), page_text(page)
        running = [title for title, job_id in jobs.items() if not _final(slow_stack, job_id)]
        if os.environ.get("VUQ_SCREENSHOT"):
            save_screenshot(page, os.environ["VUQ_SCREENSHOT"])
    return Seen(rows, visible, text, running, jobs, failing)


def _final(stack: Stack, job_id: str) -> bool:
    job = stack.store.get(job_id)
    return job is not None and job.state.final


def _chunk_of(row: Row, title: str) -> str | None:
    """'k/n' if ``row`` is a task of the upload titled ``title`` and shows its chunk as k/n."""
    if f"'title': '{title}'" not in row.get("kwargs", ""):
        return None
    found = CHUNK.search(row["kwargs"])
    return f"{found.group(1)}/{found.group(2)}" if found else None


def _failure(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.get("state") == "FAILURE" and EMPTY_REASON in r.get("exception", "")), None)


def _everything_shown(rows: list[Row]) -> bool:
    return _failure(rows) is not None and all(any(_chunk_of(r, t) for r in rows) for t in UPLOADS)


def test_the_page_was_read_while_uploads_ran(seen: Seen) -> None:
    assert seen.running, f"every upload had ended before Flower's page was read: raise LATENCY_MS ({LATENCY_MS})"


def test_each_upload_shows_its_title_and_chunk_k_of_n(seen: Seen) -> None:
    for title, size in UPLOADS.items():
        shown = sorted({c for r in seen.rows if (c := _chunk_of(r, title))})
        assert shown, f"no task of {title!r} shows its chunk as k/n"
        total = -(-size // CHUNK_SIZE)
        assert all(c.endswith(f"/{total}") and 2 <= int(c.split("/")[0]) <= total for c in shown), (title, shown)
        assert f"'title': '{title}'" in seen.text and any(f"'chunk': '{c}'" in seen.text for c in shown)
        assert any(r["name"] == "vuq.upload.chunk" and f"'job_id': '{seen.jobs[title]}'" in r["kwargs"]
                   for r in seen.rows if _chunk_of(r, title)), title


def test_the_failure_shows_its_exception_type_and_reason(seen: Seen) -> None:
    failure = _failure(seen.rows)
    assert failure is not None
    assert failure["name"] == "vuq.upload.start"
    assert failure["exception"].startswith("JobFailed(") and seen.failing in failure["exception"]
    assert "not resumable" in failure["exception"]
    assert f"'job_id': '{seen.failing}'" in failure["kwargs"] and f"'title': '{FAILING_TITLE}'" in failure["kwargs"]
    assert EMPTY_REASON in seen.text and "JobFailed(" in seen.text
    assert AUTH[1] not in seen.text


def test_an_operator_sees_title_chunk_and_reason_without_scrolling_sideways(seen: Seen) -> None:
    for title in UPLOADS:
        assert any(_chunk_of(r, title) for r in seen.visible), (title, [r["kwargs"] for r in seen.visible])
    failure = _failure(seen.visible)
    assert failure is not None, [r["exception"] for r in seen.visible if r["state"] == "FAILURE"]
    assert "JobFailed" in failure["exception"]


def test_the_uploads_then_finish(seen: Seen, slow_stack: Stack) -> None:
    for title, job_id in seen.jobs.items():
        job = slow_stack.wait_final(job_id, timeout_s=30)
        assert job.state == State.DONE, (title, job.error)
    failed = slow_stack.store.get(seen.failing)
    assert failed is not None and failed.state == State.FAILED and EMPTY_REASON in (failed.error or "")
