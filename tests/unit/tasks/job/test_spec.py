"""tasks.job.spec: the job spec contract; every refusal names its field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tasks.constants import MAX_METADATA_PAIRS, MAX_TAGS, MAX_TITLE_CHARS, MIB, SPEC_VERSION
from tasks.errors import PermanentError, SpecError
from tasks.job.spec import UploadSpec, parse_spec

TOKEN = "to1234567890abcdefghijKL"


def full_spec() -> dict[str, Any]:
    return {
        "version": 1,
        "source": "/data/videos/talk.mp4",
        "token": TOKEN,
        "video": {
            "title": "A talk",
            "description": "About queues",
            "tags": ["conf", "2024"],
            "metadata": {"team": "video"},
            "public": False,
            "panoramic": False,
            "mp4Support": True,
            "playerId": "pl123",
        },
        "chunk_size": "50MiB",
        "job_id": "job-1.a:b_c",
        "callback_url": "https://example.com/hook",
    }


def refused(raw: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return info.value


def test_minimal_spec_needs_only_a_source() -> None:
    spec = parse_spec({"source": "/data/v.mp4"})
    assert spec == UploadSpec(source="/data/v.mp4")


def test_full_spec_is_kept_and_normalized() -> None:
    spec = parse_spec(full_spec())
    assert spec.source == "/data/videos/talk.mp4"
    assert spec.token == TOKEN
    assert spec.chunk_size == 50 * MIB
    assert spec.job_id == "job-1.a:b_c"
    assert spec.callback_url == "https://example.com/hook"
    assert spec.video.metadata == (("team", "video"),)
    assert spec.video.tags == ("conf", "2024")
    assert spec.video.mp4_support is True
    assert spec.video.player_id == "pl123"
    assert spec.video.to_json() == {**full_spec()["video"], "metadata": [{"key": "team", "value": "video"}]}


@pytest.mark.parametrize("source", ["/data/v.mp4", "file:///data/v.mp4", "http://h/v.mp4", "https://h/v.mp4"])
def test_supported_sources(source: str) -> None:
    assert parse_spec({"source": source}).source == source


def test_spec_error_is_permanent_and_a_value_error() -> None:
    error = refused({})
    assert isinstance(error, PermanentError)
    assert isinstance(error, ValueError)
    assert error.reason == "bad_spec"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "source"),
        ({"source": None}, "source"),
        ({"source": "  "}, "source"),
        ({"source": 42}, "source"),
        ({"source": "s3://bucket/v.mp4"}, "source"),
        ({"source": "/v", "video": {"title": 5}}, "video.title"),
        ({"source": "/v", "video": {"description": ["x"]}}, "video.description"),
        ({"source": "/v", "video": {"tags": "a,b"}}, "video.tags"),
        ({"source": "/v", "video": {"tags": ["a", 3]}}, "video.tags[1]"),
        ({"source": "/v", "video": {"public": "yes"}}, "video.public"),
        ({"source": "/v", "video": {"panoramic": 1}}, "video.panoramic"),
        ({"source": "/v", "video": {"mp4Support": "true"}}, "video.mp4Support"),
        ({"source": "/v", "video": "title"}, "video"),
        ({"source": "/v", "video": {"colour": "red"}}, "video.colour"),
        ({"source": "/v", "priority": 3}, "priority"),
        ({"source": "/v", "version": 2}, "version"),
        ({"source": "/v", "token": ""}, "token"),
        ({"source": "/v", "token": 12}, "token"),
        ({"source": "/v", "chunk_size": 5 * MIB - 1}, "chunk_size"),
        ({"source": "/v", "chunk_size": 128 * MIB + 1}, "chunk_size"),
        ({"source": "/v", "chunk_size": "lots"}, "chunk_size"),
        ({"source": "/v", "chunk_size": "5.5 parsecs"}, "chunk_size"),
        ({"source": "/v", "chunk_size": 50.0 * MIB}, "chunk_size"),
        ({"source": "/v", "chunk_size": True}, "chunk_size"),
        ({"source": "/v", "job_id": "has space"}, "job_id"),
        ({"source": "/v", "job_id": "a/b"}, "job_id"),
        ({"source": "/v", "job_id": "-leading-dash"}, "job_id"),
        ({"source": "/v", "job_id": "x" * 129}, "job_id"),
        ({"source": "/v", "callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"source": "/v", "callback_url": "javascript:alert(1)"}, "callback_url"),
        ({"source": "/v", "callback_url": "https://"}, "callback_url"),
        ({"source": "/v", "video": {"title": "t" * (MAX_TITLE_CHARS + 1)}}, "video.title"),
        ({"source": "/v", "video": {"tags": ["t"] * (MAX_TAGS + 1)}}, "video.tags"),
        ({"source": "/v", "video": {"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_PAIRS + 1)}}},
         "video.metadata"),
        ({"source": "/v", "video": {"metadata": {"k": "v" * 257}}}, "video.metadata[k]"),
        ({"source": "/v", "video": {"metadata": "k=v"}}, "video.metadata"),
        ({"source": "/v", "video": {"metadata": [{"key": "k"}]}}, "video.metadata[0]"),
        ({"source": "/v", "video": {"metadata": [{"key": "", "value": "v"}]}}, "video.metadata[0].key"),
        ({"source": "/v", "video": {"title": "bad\udcff"}}, "video.title"),
    ],
)
def test_bad_input_names_its_field(raw: dict[str, Any], field: str) -> None:
    error = refused(raw)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


def test_a_spec_that_is_not_an_object_is_refused() -> None:
    assert refused(["source", "/v"]).field == "spec"


def test_unknown_field_lists_the_allowed_ones() -> None:
    assert "callback_url" in str(refused({"source": "/v", "sauce": "/v"}))


def test_non_utf8_title_is_called_out() -> None:
    assert "UTF-8" in str(refused({"source": "/v", "video": {"title": "bad\udcff"}}))


def test_unsupported_scheme_names_it() -> None:
    assert "'s3'" in str(refused({"source": "s3://bucket/key"}))


@pytest.mark.parametrize(("given", "expected"), [("50MiB", 50 * MIB), ("5 MiB", 5 * MIB), (128 * MIB, 128 * MIB),
                                                 (str(5 * MIB), 5 * MIB)])
def test_chunk_size_accepts_sizes_at_and_within_bounds(given: object, expected: int) -> None:
    assert parse_spec({"source": "/v", "chunk_size": given}).chunk_size == expected


def test_metadata_as_dict_and_as_list_normalize_alike() -> None:
    pairs = [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    as_dict = parse_spec({"source": "/v", "video": {"metadata": {"a": "1", "b": "2"}}})
    as_list = parse_spec({"source": "/v", "video": {"metadata": pairs}})
    assert as_dict.video.to_json()["metadata"] == pairs
    assert as_list.video == as_dict.video


def test_player_id_may_be_cleared_with_null() -> None:
    assert parse_spec({"source": "/v", "video": {"playerId": None}}).video.to_json() == {"playerId": None}


def test_the_json_form_never_contains_the_token() -> None:
    spec = parse_spec(full_spec())
    public = spec.to_json()
    assert "token" not in public
    assert TOKEN not in repr(public)
    assert public["version"] == SPEC_VERSION
    assert public["chunk_size"] == 50 * MIB
    assert public["job_id"] == "job-1.a:b_c"


def test_the_json_form_leaves_out_unset_options() -> None:
    assert parse_spec({"source": "/v"}).to_json() == {"version": SPEC_VERSION, "source": "/v", "video": {}}


def test_the_json_form_reads_back_as_the_same_spec_without_its_token() -> None:
    spec = parse_spec(full_spec())
    assert UploadSpec.from_json(spec.to_json()) == replace(spec, token=None)
    cleared = parse_spec({"source": "/v", "video": {"playerId": None}})
    assert UploadSpec.from_json(cleared.to_json()) == cleared


def test_a_job_id_with_a_trailing_newline_is_refused() -> None:
    assert refused({"source": "/v", "job_id": "job-1\n"}).field == "job_id"


# -- control and bidirectional characters ------------------------------------------------------------
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
TEXT_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("video.title", {"video": {"title": "A{c}talk"}}),
    ("video.description", {"video": {"description": "About{c}queues"}}),
    ("video.tags[1]", {"video": {"tags": ["conf", "20{c}24"]}}),
    ("video.metadata[0].key", {"video": {"metadata": [{"key": "te{c}am", "value": "video"}]}}),
    ("video.metadata[team]", {"video": {"metadata": {"team": "vi{c}deo"}}}),
    ("video.playerId", {"video": {"playerId": "pl{c}123"}}),
    ("source", {"source": "/data/videos/ta{c}lk.mp4"}),
    ("token", {"token": "to12345{c}67890"}),
    ("callback_url", {"callback_url": "https://example.com/ho{c}ok"}),
]


def with_char(template: dict[str, Any], char: str) -> dict[str, Any]:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{c}", char)
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {**full_spec(), **fill(template)}


@pytest.mark.parametrize(("field", "template"), TEXT_FIELDS, ids=[f for f, _ in TEXT_FIELDS])
@pytest.mark.parametrize("char", [c for c in CONTROLS if c not in "\n\t"] + BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_control_and_bidi_characters_are_refused_naming_the_field(field: str, template: dict[str, Any],
                                                                  char: str) -> None:
    error = refused(with_char(template, char))
    assert error.field == field, error
    assert f"U+{ord(char):04X}" in str(error) and "\n" not in str(error) and char not in str(error)


@pytest.mark.parametrize(("field", "template"), [f for f in TEXT_FIELDS if f[0] != "video.description"],
                         ids=[f for f, _ in TEXT_FIELDS if f != "video.description"])
@pytest.mark.parametrize("char", ["\n", "\t"], ids=["LF", "TAB"])
def test_one_line_fields_refuse_line_feeds_and_tabs(field: str, template: dict[str, Any], char: str) -> None:
    assert refused(with_char(template, char)).field == field


def test_a_description_keeps_its_lines_and_tabs() -> None:
    text = "Chapters:\n\t1. Queues\n\t2. Workers\n"
    assert parse_spec({"source": "/v.mp4", "video": {"description": text}}).video.description == text


@pytest.mark.parametrize(("char", "said"), [("\x00", "U+0000 (null byte)"), ("\x1b", "U+001B (escape)"),
                                             ("\r", "U+000D (carriage return)"), ("\x9b", "(control sequence"),
                                             ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
                                             ("\u2068", "U+2068 (FIRST STRONG ISOLATE)")])
def test_the_refusal_names_the_character_and_where_it_is(char: str, said: str) -> None:
    error = refused({"source": "/v.mp4", "video": {"title": f"Talk{char}"}})
    assert said in str(error) and "at character 5" in str(error), error


def test_a_crlf_description_is_refused_with_the_reason() -> None:
    error = refused({"source": "/v.mp4", "video": {"description": "one\r\ntwo"}})
    assert error.field == "video.description" and "other than line feed and tab" in str(error)


@pytest.mark.parametrize("text", ["Café ☕ — «talk»", "مرحبا بالعالم", "שלום", "日本語のタイトル", "e\u0301",
                                  "zero\u200bwidth", "mark\u200fRLM", "emoji 👩‍💻"])
def test_other_unicode_text_passes(text: str) -> None:
    assert parse_spec({"source": "/v.mp4", "video": {"title": text}}).video.title == text


def test_a_live_spec_names_a_local_file_and_may_finish_by_itself() -> None:
    spec = parse_spec({"source": "/v/live.mp4", "live": True, "finish_when_idle_s": 30})
    assert spec.live and spec.finish_when_idle_s == 30
    assert UploadSpec.from_json(spec.to_json()) == spec and spec.to_json()["live"] is True
    assert "live" not in parse_spec({"source": "/v/a.mp4"}).to_json()  # specs at rest stay as they were
    assert spec.fingerprint() != parse_spec({"source": "/v/live.mp4"}).fingerprint()


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"source": "https://cdn.example.com/a.mp4", "live": True}, "live", "local file"),
    ({"source": "/v/a.mp4", "live": "yes"}, "live", "true or false"),
    ({"source": "/v/a.mp4", "finish_when_idle_s": 5}, "finish_when_idle_s", "live jobs only"),
    ({"source": "/v/a.mp4", "live": True, "finish_when_idle_s": 0}, "finish_when_idle_s", "1..604800"),
    ({"source": "/v/a.mp4", "live": True, "finish_when_idle_s": True}, "finish_when_idle_s", "whole number"),
])
def test_live_fields_are_checked_naming_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(raw)
    assert refused.value.field == field and words in str(refused.value)
