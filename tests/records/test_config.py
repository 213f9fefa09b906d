"""MetricsConfig: defaults, validation at construction, environment parsing."""

import pytest

from steer_llm_sdk.observability import MetricsConfig


def test_defaults_match_the_documented_values():
    c = MetricsConfig()
    assert (c.enabled, c.batch_size, c.batch_timeout_seconds) == (True, 100, 1.0)
    assert (c.enable_cost_tracking, c.max_queue_size, c.sink_queue_size) == (False, 10_000, 10_000)
    assert (c.request_sampling_rate, c.streaming_sampling_rate, c.error_sampling_rate) == (
        1.0,
        1.0,
        1.0,
    )
    assert (c.flush_on_exit, c.shutdown_timeout_seconds) == (True, 5.0)
    assert (c.max_attributes, c.max_attribute_length, c.filters) == (32, 256, ())


@pytest.mark.parametrize(
    "field,value,error,words",
    [
        ("request_sampling_rate", 1.5, ValueError, "request_sampling_rate must be in [0.0, 1.0]"),
        ("error_sampling_rate", -0.1, ValueError, "error_sampling_rate"),
        ("streaming_sampling_rate", float("nan"), ValueError, "streaming_sampling_rate"),
        ("batch_size", 0, ValueError, "batch_size must be in [1,"),
        ("batch_size", 2.5, TypeError, "batch_size must be an int"),
        ("batch_size", True, TypeError, "batch_size"),
        ("batch_timeout_seconds", 0, ValueError, "batch_timeout_seconds must be in (0.0"),
        ("shutdown_timeout_seconds", -1, ValueError, "shutdown_timeout_seconds"),
        ("enabled", "yes", TypeError, "enabled must be a bool"),
        ("max_queue_size", 0, ValueError, "max_queue_size"),
        ("filters", ["not callable"], TypeError, "filters"),
        ("filters", "x", TypeError, "filters must be a list"),
        ("model_argument", "not an identifier", TypeError, "model_argument"),
    ],
)
def test_invalid_values_name_field_and_range(field, value, error, words):
    with pytest.raises(error) as info:
        MetricsConfig(**{field: value})
    assert words in str(info.value)


def test_immutable_and_replace_validates():
    c = MetricsConfig()
    with pytest.raises(AttributeError):
        c.batch_size = 5  # type: ignore[misc]
    d = c.replace(batch_size=5)
    assert d.batch_size == 5 and c.batch_size == 100
    with pytest.raises(ValueError):
        c.replace(batch_size=0)
    with pytest.raises(TypeError, match="unknown"):
        c.replace(nope=1)
    assert c == MetricsConfig() and c != d


def test_from_env_parses_into_the_same_validated_object():
    env = {
        "STEER_METRICS_ENABLED": "false",
        "STEER_METRICS_BATCH_SIZE": " 50 ",
        "STEER_METRICS_REQUEST_SAMPLING_RATE": "0.25",
        "STEER_METRICS_FLUSH_ON_EXIT": "off",
        "STEER_METRICS_MODEL_ARGUMENT": "engine",
        "STEER_METRICS_MAX_QUEUE_SIZE": "",
        "UNRELATED": "1",
    }
    c = MetricsConfig.from_env(env)
    assert c == MetricsConfig(
        enabled=False,
        batch_size=50,
        request_sampling_rate=0.25,
        flush_on_exit=False,
        model_argument="engine",
    )
    assert MetricsConfig.from_env(env, batch_size=7).batch_size == 7


@pytest.mark.parametrize(
    "var,value,words",
    [
        ("STEER_METRICS_BATCH_SIZE", "ten", "STEER_METRICS_BATCH_SIZE: expected an integer"),
        ("STEER_METRICS_ENABLED", "maybe", "STEER_METRICS_ENABLED: expected one of"),
        ("STEER_METRICS_ERROR_SAMPLING_RATE", "2", "STEER_METRICS_ERROR_SAMPLING_RATE"),
        ("STEER_METRICS_BATCH_TIMEOUT_SECONDS", "soon", "STEER_METRICS_BATCH_TIMEOUT_SECONDS"),
    ],
)
def test_from_env_errors_name_the_variable(var, value, words):
    with pytest.raises(ValueError) as info:
        MetricsConfig.from_env({var: value})
    assert words in str(info.value)
