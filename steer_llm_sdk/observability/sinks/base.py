"""The sink protocol, under the name it has always been imported by; it is defined in
:mod:`steer_llm_sdk.observability.sink`, below the pipeline that calls sinks."""

from ..sink import MetricsSink, close, sink_name

__all__ = ["MetricsSink", "close", "sink_name"]
