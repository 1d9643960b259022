"""Flower's task list in a real headless browser: Debian's Chromium driven by Playwright.

Playwright (PyPI) drives the system's ``/usr/bin/chromium`` through ``executable_path``; it never
downloads a browser of its own (do not run ``playwright install``). Flower's task list is a
server-side DataTable filled by XHR after the page loads, so these helpers wait on DataTables'
own ``draw`` and read the rendered cells, not the HTML Flower sends.

    with flower_browser(url, ("ops", "secret")) as page:
        open_tasks(page)
        rows = wait_for_rows(page, lambda rows: any(r["state"] == "FAILURE" for r in rows), 20)
        save_screenshot(page, "docs/flower-tasks.png")

``tests/integration/test_flower_browser.py`` uses them; with ``VUQ_SCREENSHOT=docs/flower-tasks.png``
that test also writes the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = os.environ.get("VUQ_CHROMIUM", "/usr/bin/chromium")
# What works on a machine without a display and with a closed network: without the background
# networking flags Chromium's own connections (updates, sync, field trials) are refused and slow it.
# Playwright adds --headless and a fresh, empty --user-data-dir of its own.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 800}
Row = dict[str, str]

# The rendered table: each body row as {column slug: the cell's whole rendered text, clipped or not}.
# The slugs come from the header Flower renders in its --tasks_columns order (th[data-column]).
_ROWS_JS = """() => {
    const names = Array.from(document.querySelectorAll('#tasks-table thead th'),
                             th => th.getAttribute('data-column'));
    return Array.from(document.querySelectorAll('#tasks-table tbody tr'))
        .filter(tr => !tr.querySelector('td.dataTables_empty'))
        .map(tr => Object.fromEntries(Array.from(tr.cells, (td, i) => [names[i], td.innerText.trim()])));
}"""
# The same rows as a person sees them without scrolling sideways: of each cell only the characters
# inside every box that clips it (the cell's max-width with its ellipsis, the table's horizontal
# scroller, the card) and inside the window's width. Vertical position is ignored (the page scrolls).
_VISIBLE_ROWS_JS = """() => {
    const names = Array.from(document.querySelectorAll('#tasks-table thead th'),
                             th => th.getAttribute('data-column'));
    const canvas = document.createElement('canvas').getContext('2d');
    function clipX(el) {
        let left = 0, right = document.documentElement.clientWidth;
        for (let box = el; box && box !== document.body; box = box.parentElement) {
            const style = getComputedStyle(box);
            if (style.overflowX === 'visible') continue;
            const rect = box.getBoundingClientRect();
            const borderL = parseFloat(style.borderLeftWidth), borderR = parseFloat(style.borderRightWidth);
            let inner = rect.right - borderR;
            if (box === el) {
                inner -= parseFloat(style.paddingRight);
                if (style.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth) {
                    canvas.font = style.font;
                    inner -= canvas.measureText('\u2026').width;
                }
            }
            left = Math.max(left, rect.left + borderL);
            right = Math.min(right, inner);
        }
        return [left, right];
    }
    function visible(td) {
        const [left, right] = clipX(td);
        const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
        const range = document.createRange();
        let shown = '';
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (let i = 0; i < node.length; i++) {
                range.setStart(node, i);
                range.setEnd(node, i + 1);
                const rect = range.getBoundingClientRect();
                if (rect.width === 0 && rect.height === 0) continue;  // not rendered (display: none)
                if (rect.left >= left - 0.5 && rect.right <= right + 0.5) shown += node.data[i];
            }
        }
        return shown.trim();
    }
    return Array.from(document.querySelectorAll('#tasks-table tbody tr'))
        .filter(tr => !tr.querySelector('td.dataTables_empty'))
        .map(tr => Object.fromEntries(Array.from(tr.cells, (td, i) => [names[i], visible(td)])));
}"""
# Where each column's cells are on screen: {column: [left, right]} of the header cells as drawn.
_COLUMNS_JS = """() => Object.fromEntries(Array.from(
    document.querySelectorAll('.dataTables_scrollHead thead th'),
    th => [th.getAttribute('data-column'), [th.getBoundingClientRect().left, th.getBoundingClientRect().right]]))"""
_READY_JS = """() => window.jQuery !== undefined && jQuery.fn.dataTable !== undefined
    && jQuery.fn.dataTable.isDataTable('#tasks-table')
    && jQuery('#tasks-table').DataTable().ajax.json() !== undefined"""
# Redraw from the server (serverSide: every draw is an XHR) and resolve once the new rows are drawn.
_REDRAW_JS = """(length) => new Promise((resolve, reject) => {
    const table = jQuery('#tasks-table').DataTable();
    const timer = setTimeout(() => reject(new Error('the task table did not redraw')), 10000);
    table.one('draw', () => { clearTimeout(timer); resolve(true); });
    if (length && table.page.len() !== length) { table.page.len(length).draw(); }
    else { table.ajax.reload(null, false); }
})"""


def browser_missing() -> str | None:
    """Why a headless Chromium cannot be driven here, or None if it can."""
    try:
        import playwright.sync_api  # noqa: F401 - only whether it is installed
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)"
    return None


@contextmanager
def flower_browser(base_url: str, credentials: tuple[str, str] | None = None,
                   viewport: dict[str, int] | None = None) -> Iterator[Page]:
    """A page of a fresh headless Chromium whose context knows Flower's basic-auth ``credentials``
    and resolves relative URLs against ``base_url``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable = shutil.which(CHROMIUM) or CHROMIUM
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        try:
            auth: Any = {"username": credentials[0], "password": credentials[1]} if credentials else None
            context = browser.new_context(base_url=base_url, http_credentials=auth,
                                          viewport=viewport or VIEWPORT)  # type: ignore[arg-type]
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def open_tasks(page: Page, page_length: int = 100) -> list[Row]:
    """Open Flower's task list (``/tasks``), wait for its table's first rows from the server, show
    ``page_length`` rows a page (Flower's default is 15); the rows as drawn."""
    answer = page.goto("/tasks")
    if answer is None or answer.status != 200:
        raise AssertionError(f"Flower's /tasks answered {answer.status if answer else 'nothing'}")
    page.wait_for_function(_READY_JS)
    page.evaluate(_REDRAW_JS, page_length)
    return task_rows(page)


def task_rows(page: Page) -> list[Row]:
    """The task table's rows as drawn: {column: the cell's whole text (innerText), even where clipped}."""
    rows: list[Row] = page.evaluate(_ROWS_JS)
    return rows


def visible_rows(page: Page) -> list[Row]:
    """The rows as a person sees them without scrolling sideways: each cell's characters that are not
    clipped (by its max-width and ellipsis, the table's scroller, the window)."""
    rows: list[Row] = page.evaluate(_VISIBLE_ROWS_JS)
    return rows


def column_spans(page: Page) -> dict[str, tuple[float, float]]:
    """Each column's [left, right] on screen (from its header), to tell which lie beyond the window."""
    spans: dict[str, list[float]] = page.evaluate(_COLUMNS_JS)
    return {name: (span[0], span[1]) for name, span in spans.items()}


def refresh(page: Page) -> list[Row]:
    """Reload the table from Flower (its task list does not refresh by itself) and return its rows."""
    page.evaluate(_REDRAW_JS, 0)
    return task_rows(page)


def wait_for_rows(page: Page, ready: Callable[[list[Row]], bool], timeout_s: float,
                  interval_s: float = 0.3) -> list[Row]:
    """Reload the table until ``ready(rows)``; the rows then. AssertionError with the last rows at timeout."""
    deadline = time.monotonic() + timeout_s
    rows = task_rows(page)
    while not ready(rows):
        if time.monotonic() > deadline:
            shown = "\n".join(" | ".join(f"{k}={v}" for k, v in row.items()) for row in rows)
            raise AssertionError(f"Flower's task list never showed what was expected; it showed:\n{shown}")
        time.sleep(interval_s)
        rows = refresh(page)
    return rows


def page_text(page: Page) -> str:
    """Everything the page shows as text (the body's innerText)."""
    return page.inner_text("body")


def save_screenshot(page: Page, path: str | Path) -> Path:
    """A PNG of the viewport, written to ``path`` (its folder is made)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), type="png", animations="disabled", caret="hide")
    return target
