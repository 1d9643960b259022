"""Fixtures for conformance tests: the emulator subprocess and the vendored OpenAPI document.

``openapi.yaml`` next to this file is api.video's published OpenAPI document, vendored
as it is (sha256 5f3de7ee…). It is read with YAML 1.2
booleans (only true/false), so the unquoted language code ``no`` stays a string.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.emulator import Emulator, running_emulator  # noqa: E402

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
SPEC_HOST_URL = "https://ws.api.video"  # the spec's server; the emulator answers in its place
BOOL_TAG = "tag:yaml.org,2002:bool"


class Yaml12BoolLoader(yaml.SafeLoader):
    """SafeLoader that resolves only true/false as booleans (not yes/no/on/off)."""


Yaml12BoolLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12BoolLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_spec_dict() -> dict[str, Any]:
    """The OpenAPI document as a dict, with ``no`` kept as a string."""
    with SPEC_PATH.open() as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=Yaml12BoolLoader)
    return data


@dataclass
class HttpxOpenAPIRequest:
    """openapi-core's Request protocol over an httpx request, on the spec's host."""

    request: httpx.Request

    @property
    def host_url(self) -> str:
        return SPEC_HOST_URL

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def parameters(self) -> RequestParameters:
        query = ImmutableMultiDict(parse_qsl(urlsplit(str(self.request.url)).query))
        return RequestParameters(query=query, header=Headers(self.request.headers.multi_items()))

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "")

    @property
    def body(self) -> bytes | None:
        return None  # request bodies are not validated here (uploads are streamed)


@dataclass
class HttpxOpenAPIResponse:
    """openapi-core's Response protocol over an httpx response."""

    response: httpx.Response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(self.response.headers.multi_items())

    @property
    def data(self) -> bytes | None:
        return self.response.content or None


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """The spec, loaded without openapi-core's spec validator (it rejects `(?<name>…)`)."""
    from openapi_core import Config

    return OpenAPI.from_dict(load_spec_dict(), config=Config(spec_validator_cls=None))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A fresh emulator on its own data dir."""
    with running_emulator(tmp_path / "emulator-data") as emu:
        yield emu
