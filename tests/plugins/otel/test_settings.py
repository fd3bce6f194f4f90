"""The otel block over the OTEL_* variables: what wins, and errors that name file, line and key."""

from __future__ import annotations

import pytest

from natsd import Server
from natsd.config import ConfigError
from natsd.config.conf import parse
from natsd_plugins.otel import http_endpoint
from natsd_plugins.otel.settings import load


def test_the_block_wins_over_the_environment_which_wins_over_defaults() -> None:
    env = {"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_RESOURCE_ATTRIBUTES": "a=1,b=x%20y"}
    s = load(parse("otel { service_name: broker, resource: { a: 2 } }")["otel"], env)
    assert (s.service_name, s.sampler, s.ratio, s.protocol) == ("broker", "traceidratio", 0.25, "grpc")
    assert s.resource == {"a": "2", "b": "x y"}
    assert (s.root_ratio, s.parent_based) == (0.25, False)
    d = load(True, {})
    assert (d.exporter, d.sampler, d.service_name, d.start_traces, d.delivery_spans) == (
        "otlp", "parentbased_always_on", "natsd", False, True)
    assert load(True, {"OTEL_TRACES_SAMPLER_ARG": "lots"}).ratio == 1.0  # the SDK's fallback
    assert http_endpoint("http://c:4318") == "http://c:4318/v1/traces"
    assert http_endpoint("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"


@pytest.mark.parametrize(("text", "key", "words"), [
    ("otel { sampler: sometimes }", "sampler", "expected one of always_on"),
    ("otel { ratio: 2 }", "ratio", "from 0 to 1"),
    ("otel { exporter: jaeger }", "exporter", "otlp, console, none"),
    ("otel { protocol: thrift }", "protocol", "http/protobuf, grpc"),
    ("otel {\n  colour: blue\n}", "colour", "unknown field"),
])
def test_bad_settings_name_the_file_line_and_key(text: str, key: str, words: str, tmp_path) -> None:
    conf = tmp_path / "natsd.conf"
    conf.write_text("port: -1\n" + text + "\n")
    with pytest.raises(ConfigError) as info:
        Server(str(conf)).configure()
    err = info.value
    assert err.key == key and words in str(err) and str(conf) in str(err)
    assert err.line is not None and err.line >= 2
