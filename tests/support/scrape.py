"""A Prometheus scrape read the way PromQL sees it: series by sample name (``…_total``, ``…_bucket``,
``…_count``), each with its labels; and whether a query's selectors, labels and legends can be
answered by what was scraped."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.promql import TARGET_LABELS, Query, Selector, matches


@dataclass
class Scrape:
    """Every sample of one or more ``/metrics`` answers: name → the label sets it was seen with."""

    series: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, *texts: str) -> Scrape:
        scrape = cls()
        for text in texts:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    scrape.series.setdefault(sample.name, []).append(dict(sample.labels))
        return scrape

    def labels_of(self, name: str) -> set[str]:
        """The labels series of ``name`` carry, with those Prometheus adds at scrape time."""
        return {label for labels in self.series.get(name, []) for label in labels} | TARGET_LABELS

    def answers(self, selector: Selector) -> bool:
        """Whether some scraped series satisfies the selector (name and every matcher)."""
        return any(all(matches(m, labels.get(m.label, "")) for m in selector.matchers)
                   for labels in self.series.get(selector.name, []))


def fetch(url: str) -> str:
    """The text of a ``/metrics`` answer (raises on an HTTP error)."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.text


def problems(query: Query, scrape: Scrape, shown: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What in ``query`` the scrape cannot answer: unknown metrics, labels no series of its metrics
    carries, selectors no series satisfies; ``shown``: labels a legend or template reads as well."""
    found = []
    known = set()
    for name in sorted(query.metrics):
        if name not in scrape.series:
            found.append(f"no metric {name}")
        known |= scrape.labels_of(name)
    for label in sorted((query.labels | shown) - known):
        found.append(f"no series of {sorted(query.metrics)} carries the label {label!r}")
    for selector in query.selectors:
        wanted = [m for m in selector.matchers if m.op in ("=", "=~")]
        if selector.name in scrape.series and not scrape.answers(Selector(selector.name, tuple(wanted))):
            wanted_text = ", ".join(f"{m.label}{m.op}{m.value!r}" for m in wanted)
            found.append(f"no series answers {selector.name}{{{wanted_text}}}")
    return found
