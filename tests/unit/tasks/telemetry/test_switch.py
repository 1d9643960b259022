"""tasks.telemetry.switch: the standard OTEL_* variables alone turn tracing on."""

from __future__ import annotations

import pytest

from tasks.telemetry.switch import exporters


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ()),
    ({"OTEL_SERVICE_NAME": "uploads"}, ()),  # naming the service sends nothing
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": "none"}, ()),
    ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ("otlp", "console")),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, ()),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, ()),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, ("otlp",)),
])
def test_tracing_is_on_only_when_the_environment_asks(env: dict[str, str], expected: tuple[str, ...]) -> None:
    assert exporters(env) == expected
