"""What a PromQL expression reads: the metric names it selects, the label matchers on each, and the
labels it groups or matches by. Enough of the language for the dashboard and the alert rules
(selectors, ranges and subqueries, functions, aggregations with ``by``/``without``, vector matching
with ``on``/``ignoring``/``group_left``/``group_right``, ``offset``, ``bool``, strings and numbers);
it reads names, it does not evaluate.

``promtool`` parses the whole language where it is installed (``tests/unit/test_deploy_config.py``);
this reader is what lets a test compare the names against a real scrape without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Labels Prometheus adds to every scraped series itself (the scrape target's), never in an exposition.
TARGET_LABELS = frozenset({"instance", "job"})
AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                          "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | frozenset({"and", "or", "unless", "atan2", "offset", "bool", "inf", "nan"})
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<matchop>=~|!~|!=|==|<=|>=|=)
  | (?P<punct>[(){},+\-*/%^<>@])
""", re.VERBOSE)
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    """``name{matchers}``: one series selector of an expression."""

    name: str
    matchers: tuple[Matcher, ...] = ()


@dataclass
class Query:
    """The names one expression reads."""

    text: str
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)  # labels in by/without/on/ignoring/group_* lists

    @property
    def metrics(self) -> set[str]:
        return {s.name for s in self.selectors}

    @property
    def labels(self) -> set[str]:
        """Every label the expression names: in matchers and in grouping lists."""
        return self.grouping | {m.label for s in self.selectors for m in s.matchers}


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs, spaces dropped; ValueError on a character PromQL has no use for."""
    found, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read {text[pos:pos + 20]!r} in {text!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            found.append((kind, match.group()))
        pos = match.end()
    return found


def parse(text: str) -> Query:
    """The metric names, matchers and grouping labels of ``text``."""
    query, toks, i = Query(text), tokens(text), 0
    depth = 0
    while i < len(toks):
        kind, word = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "punct" and word in "()":
            depth += 1 if word == "(" else -1
        if kind == "ident" and word in GROUPING:
            if nxt == "(":
                labels, i = _label_list(toks, i + 1)
                query.grouping |= labels
                continue
        elif kind == "ident" and word.lower() not in KEYWORDS and nxt != "(" and word not in AGGREGATIONS:
            matchers, i = _matchers(toks, i + 1) if nxt == "{" else ([], i + 1)
            query.selectors.append(Selector(word, tuple(matchers)))
            continue
        elif kind == "punct" and word == "{":  # a selector without a name: {__name__="…"} is not used here
            raise ValueError(f"a selector without a metric name in {text!r}")
        i += 1
    if depth:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    return query


def _label_list(toks: list[tuple[str, str]], i: int) -> tuple[set[str], int]:
    """The labels in ``( a, b )`` starting at ``toks[i]``; the index after ``)``."""
    labels, i = set(), i + 1
    while toks[i][1] != ")":
        kind, word = toks[i]
        if kind == "ident":
            labels.add(word)
        elif word != ",":
            raise ValueError(f"unexpected {word!r} in a label list")
        i += 1
    return labels, i + 1


def _matchers(toks: list[tuple[str, str]], i: int) -> tuple[list[Matcher], int]:
    """The matchers in ``{ a="x", b=~"y" }`` starting at ``toks[i]``; the index after ``}``."""
    found, i = [], i + 1
    while toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        (_, label), (_, op), (kind, value) = toks[i], toks[i + 1], toks[i + 2]
        if op not in ("=", "!=", "=~", "!~") or kind != "string":
            raise ValueError(f"cannot read the matcher {label}{op}{value}")
        found.append(Matcher(label, op, value[1:-1]))
        i += 3
    return found, i + 1


def legend_labels(legend: str) -> set[str]:
    """The labels a Grafana ``legendFormat`` shows (``{{state}}``)."""
    return set(_LEGEND.findall(legend))


def template_labels(text: str) -> set[str]:
    """The labels an alert's annotation or label template reads (``{{ $labels.reason }}``)."""
    return set(_TEMPLATE_LABEL.findall(text))


def matches(matcher: Matcher, value: str) -> bool:
    """Whether a label value satisfies the matcher (regexes are anchored, as in PromQL)."""
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    hit = re.fullmatch(matcher.value, value) is not None
    return hit if matcher.op == "=~" else not hit
