"""OpenTelemetry spans, made after the fact with the request's real timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.config import Config
from thrifty.errors import ConfigError
from thrifty.observe import Observer
from thrifty.observe.spans import default_spans

from .helpers import event, make_config, served

sdk = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


def test_each_request_becomes_a_span_with_genai_attributes(config: Config) -> None:
    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    obs = Observer(config, tracer=provider.get_tracer("test"))
    obs.record(event(1, ts=1000.0, latency_s=0.5, **served("fast", "miss")))
    obs.record(event(2, status=504, error_type="timeout_error"))
    obs.absorb()
    ok, failed = exporter.get_finished_spans()
    assert ok.name == "chat fast"
    assert (ok.start_time, ok.end_time) == (999_500_000_000, 1_000_000_000_000)
    assert ok.attributes["gen_ai.usage.input_tokens"] == 1000
    assert ok.attributes["gen_ai.response.model"] == "fast/openai/gpt-4o-mini"
    assert ok.attributes["thrifty.route.tier"] == "fast" and ok.attributes["thrifty.cost_usd"] > 0
    assert failed.status.status_code.name == "ERROR" and failed.attributes["error.type"] == "timeout_error"


def test_spans_can_be_turned_off(tmp_path: Path) -> None:
    assert default_spans(False) is None
    assert Observer(make_config(tmp_path, telemetry={"spans": False})).tally.spans is None
    with pytest.raises(ConfigError, match=r"thrifty.yaml: telemetry.spans: must be true or false"):
        Observer(make_config(tmp_path, telemetry={"spans": "yes"}))
