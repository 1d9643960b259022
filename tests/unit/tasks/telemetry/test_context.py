"""tasks.telemetry.context: the one traceparent a record keeps, and the root ids recovered from it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.telemetry.context import (
    MASK64,
    format_traceparent,
    incoming_traceparent,
    new_trace,
    of_job,
    parse_traceparent,
    resumed,
    under,
)


@dataclass(frozen=True)
class Job:
    job_id: str
    traceparent: str | None = None
    created_at: float = 1_700_000_000.25


def test_a_new_trace_is_kept_as_its_roots_own_traceparent_and_has_no_parent() -> None:
    started = new_trace("j1", sampled=True)
    assert started.parent_id is None
    assert started.traceparent == f"00-{started.trace_id:032x}-{started.root_id:016x}-01"
    found = of_job(Job("j1", started.traceparent))
    assert found == started


def test_a_job_enqueued_inside_a_span_names_that_span_as_its_roots_parent() -> None:
    trace_id, producer_span = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    started = under("j1", trace_id, producer_span, sampled=True)
    assert started.trace_id == trace_id and started.root_id not in (0, producer_span)
    found = of_job(Job("j1", started.traceparent))  # the record holds the root's context, nothing more
    assert (found.trace_id, found.root_id, found.parent_id, found.sampled) == (trace_id, started.root_id,
                                                                                producer_span, True)


def test_the_roots_of_two_jobs_under_one_span_differ() -> None:
    roots = {under(f"j{i}", 1 << 100, 77, True).root_id for i in range(1000)}
    assert len(roots) == 1000


def test_each_resumed_run_is_a_new_root_under_the_run_before_it() -> None:
    job = Job("j1", new_trace("j1", sampled=True).traceparent)
    seen = [of_job(job)]
    for _ in range(200):
        job = Job("j1", resumed(job))
        run = of_job(job)
        assert run.trace_id == seen[0].trace_id and run.parent_id == seen[-1].root_id
        seen.append(run)
    assert len({run.root_id for run in seen}) == len(seen)  # a job's root ids never repeat


def test_resuming_keeps_the_producers_trace_and_the_sampling_decision() -> None:
    first = under("j1", 5, 9, sampled=False)
    second = of_job(Job("j1", resumed(Job("j1", first.traceparent))))
    assert (second.trace_id, second.parent_id, second.sampled) == (5, first.root_id, False)


def test_a_record_without_a_traceparent_has_one_derived_the_same_everywhere() -> None:
    a, b = of_job(Job("j1")), of_job(Job("j1"))
    assert a == b and a.parent_id is None and a.sampled is None  # the sampler decides
    assert of_job(Job("j1", created_at=5.0)).trace_id != a.trace_id  # an id used again after expiry: another
    again = of_job(Job("j1", resumed(Job("j1"))))
    assert again.trace_id == a.trace_id and again.parent_id == a.root_id


TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"01-{TRACE}-{SPAN}-01",  # not the version we write
    f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE.upper()}-{SPAN.upper()}-01", 42,
])
def test_only_a_well_formed_traceparent_of_ours_parses(value: object) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize(("value", "expected"), [
    (f"00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01"),
    (f"00-{TRACE}-{SPAN}-00", f"00-{TRACE}-{SPAN}-00"),
    (f"cc-{TRACE}-{SPAN}-09-whatever", f"00-{TRACE}-{SPAN}-01"),  # a later version: its first fields count
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"00-{TRACE}-{SPAN}-01-extra", None),
    (f"00-{TRACE}-{SPAN}", None),
    ("x" * 600, None), (["00-…"], None),
])
def test_a_senders_traceparent_is_checked_as_w3c_trace_context_says(value: object, expected: str | None) -> None:
    assert incoming_traceparent(value) == expected


@given(st.integers(1, (1 << 128) - 1), st.integers(1, MASK64), st.text(min_size=1, max_size=40))
def test_the_parent_is_always_recovered_from_the_root(trace_id: int, parent: int, job_id: str) -> None:
    started = under(job_id, trace_id, parent, True)
    if started.root_id != 1:  # 1 stands in for the one root id that would be 0
        assert of_job(Job(job_id, format_traceparent(trace_id, started.root_id, True))).parent_id == parent
