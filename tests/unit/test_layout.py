"""The house rules of the code map (README, "Code map"), checked on the import graph: which room may
import which, workers through the faces of tasks, the door of tasks at most a dozen modules, no function
over 60 lines. Imports under ``if TYPE_CHECKING:`` are for type checkers only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ("tasks.constants", "tasks.errors", "tasks.redact")
TELEMETRY = "tasks.telemetry"  # beside the base: it imports only the base, and every room may import it
# each room of tasks, bottom up, and the rooms (besides itself) it may import
TASK_ROOMS: dict[str, tuple[str, ...]] = {
    TELEMETRY: BASE,
    "tasks.apivideo": (*BASE, TELEMETRY),
    "tasks.outbound": (*BASE, TELEMETRY),
    "tasks.job": (*BASE, TELEMETRY, "tasks.apivideo", "tasks.outbound"),
    "tasks.settings": (*BASE, TELEMETRY, "tasks.apivideo", "tasks.outbound", "tasks.job"),
    "tasks.pipeline": (*BASE, TELEMETRY, "tasks.apivideo", "tasks.outbound", "tasks.job", "tasks.settings"),
}
FACES = ("tasks", "tasks.job", "tasks.pipeline", "tasks.outbound", "tasks.apivideo", *BASE, "tasks.settings",
         "tasks.runtime", TELEMETRY)
CELERY = ("celery", "kombu", "billiard")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports at run time (relative imports resolved; TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
               for node in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # "from tasks import runtime"
    return found


def within(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


def real_module(name: str) -> bool:
    """``from x import y`` adds ``x.y``; keep it only when it is a module of ours."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("path", modules("tasks"), ids=lambda p: module_name(p))
def test_each_room_of_tasks_imports_only_the_rooms_below_it(path: Path) -> None:
    name = module_name(path)
    room = next((r for r in TASK_ROOMS if within(name, r)), None)
    ours = {i for i in imports(path) if within(i, "tasks") and real_module(i)}
    assert not {i for i in imports(path) if i.split(".")[0] in ("workers", "emulator", "tests", "bench")}, name
    if room is None:
        return  # the base and the door: the door may import every room
    allowed = (room, *TASK_ROOMS[room])
    if name in BASE:
        allowed = BASE
    wrong = sorted(i for i in ours if i != "tasks" and not any(within(i, r) for r in allowed))
    assert not wrong, f"{name} ({room}) imports {wrong}"
    if room == "tasks.pipeline":
        assert not {i for i in imports(path) if i.split(".")[0] in CELERY}, f"{name} imports Celery"


@pytest.mark.parametrize("path", modules("workers", "bench"), ids=lambda p: module_name(p))
def test_workers_and_bench_import_tasks_through_its_faces(path: Path) -> None:
    name = module_name(path)
    ours = {i for i in imports(path) if within(i, "tasks") and real_module(i)}
    wrong = sorted(i for i in ours if i not in FACES)
    assert not wrong, f"{name} imports {wrong} (use the faces: {', '.join(FACES)})"
    workers = {i for i in imports(path) if within(i, "workers")}
    if within(name, "workers.process"):
        assert not {i for i in workers if within(i, "workers.console") or within(i, "workers.lab")}, name
    if within(name, "workers.lab"):
        assert not {i for i in workers if within(i, "workers.console")}, name


@pytest.mark.parametrize("path", modules("tasks", "workers", "emulator", "bench"), ids=lambda p: module_name(p))
def test_product_and_bench_never_import_tests(path: Path) -> None:
    assert not {i for i in imports(path) if i.split(".")[0] == "tests"}


@pytest.mark.parametrize("path", modules("emulator"), ids=lambda p: module_name(p))
def test_the_emulator_imports_nothing_of_vuq(path: Path) -> None:
    assert not {i for i in imports(path) if i.split(".")[0] in ("tasks", "workers")}


def test_the_door_of_tasks_holds_at_most_a_dozen_modules() -> None:
    assert len(list((ROOT / "tasks").glob("*.py"))) <= 12


@pytest.mark.parametrize("path", modules("tasks", "workers"), ids=lambda p: module_name(p))
def test_no_function_is_over_sixty_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno
            and n.end_lineno - n.lineno + 1 > 60]
    assert not long, f"{module_name(path)}: {long}"


@pytest.mark.parametrize("path", modules("tasks", "workers"), ids=lambda p: module_name(p))
def test_only_the_telemetry_room_imports_opentelemetry(path: Path) -> None:
    # and there only tasks.telemetry.otel, which tasks.telemetry.spans imports once tracing is on
    found = {i for i in imports(path) if i.split(".")[0] == "opentelemetry"}
    assert not found or module_name(path) == "tasks.telemetry.otel", f"{module_name(path)} imports {found}"
