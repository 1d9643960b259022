"""``python -m bench`` (``make bench``): every benchmark in one run, one table each.

Prints the tables and writes them, with a description of the machine, to
``bench/results.md``. Each benchmark also runs alone: ``python -m bench.NAME``.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

from bench import (
    accounts,
    emulator_ingest,
    enqueue,
    fairness,
    handoff,
    history,
    live,
    memory,
    production,
    ratelimit,
    scaling,
    single_file,
    tracing,
)
from bench.common import MIB, machine, table

RESULTS_PATH = Path(__file__).with_name("results.md")


def describe() -> str:
    info = machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=RESULTS_PATH.parent).stdout.strip() or "unknown"
    rows = [["CPU", info["cpu"]], ["cores", info["cores"]], ["RAM", info["ram"]], ["Python", info["python"]],
            ["kernel", info["kernel"]], ["commit", commit],
            ["date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")]]
    return table(["machine", ""], rows)


def ingest_report(result: dict[str, object]) -> str:
    return (f"Emulator ingest: one {int(result['bytes']) // MIB} MiB upload by the bare httpx loop "  # type: ignore[call-overload]
            "(bench.emulator_ingest)\n\n"
            + table(["chunks", "seconds", "MB/s", "sha256"],
                    [[result["chunks"], f"{result['seconds']:.2f}", f"{result['mb_per_s']:.0f}",
                      "ok" if result["sha256_ok"] else "BAD"]]))


class Sections(list[str]):
    """Each section is printed as soon as it is ready."""

    def append(self, text: str) -> None:
        print(text + "\n", flush=True)
        super().append(text)


def sections() -> list[str]:
    out = Sections()
    single = single_file.run()
    out.append("## 1. " + single_file.report(single))
    peaks = memory.run(known=[single])
    out.append("## 2. " + memory.report(peaks))
    gaps = [handoff.summary(handoff.gaps_ms(single["vuq"]["log"]), "1024 MiB in 50 MiB chunks (from 1c)"),
            *(handoff.run(pool=pool, concurrency=c) for pool, c in handoff.POOLS)]
    out.append("## 3. " + handoff.report(gaps))
    out.append("## 4. " + scaling.report(scaling.run()))
    out.append("## 5. " + ratelimit.report(ratelimit.run()))
    out.append("## 6. " + ingest_report(emulator_ingest.run()))
    out.append("## 7. " + production.report(production.run()))
    out.append("## 8. " + history.report(history.run()))
    out.append("## 9. " + accounts.report([accounts.run()]))
    out.append("## 10. " + fairness.report(fairness.run("live"), fairness.run("backfill")))
    out.append("## 11. " + enqueue.report(enqueue.run()))
    out.append("## 12. " + live.report(live.run()))
    out.append("## 13. " + tracing.report(tracing.handoffs(tracing.DEFAULT_SIZE_BYTES, handoff.DEFAULT_CHUNK_BYTES, 2),
                                          tracing.seams()))
    return out


def main() -> int:
    began = time.monotonic()
    header = describe()
    print(header, flush=True)
    parts = sections()
    took = f"`python -m bench` took {time.monotonic() - began:.0f} s."
    text = "\n\n".join(["# vuq benchmarks", header, *parts, took]) + "\n"
    print(took)
    RESULTS_PATH.write_text(text)
    print(f"written to {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
