"""Filters: built-ins, callables, objects, failures fail closed, background thread only."""

import threading

from support.records import request_record

from steer_llm_sdk.observability.filters import AttributeFilter, OnlyProductionFilter


def test_only_production_filter_reads_environment_once():
    assert (
        OnlyProductionFilter(environ={"ENVIRONMENT": "Production"}).filter(request_record())
        is not None
    )
    assert OnlyProductionFilter(environ={"ENVIRONMENT": "staging"}).filter(request_record()) is None
    assert OnlyProductionFilter(environ={}).filter(request_record()) is None
    first_wins = OnlyProductionFilter(environ={"STEER_ENVIRONMENT": "dev", "ENV": "prod"})
    assert first_wins.filter(request_record()) is None


def test_attribute_filter_add_remove_keep():
    m = AttributeFilter(add={"service.version": "1.2"}, remove=["user"]).filter(
        request_record(attributes={"user": "alice", "route": "/x"})
    )
    assert m.attributes == {"route": "/x", "service.version": "1.2"}
    m = AttributeFilter(keep=["route"]).filter(
        request_record(attributes={"user": "alice", "route": "/x"})
    )
    assert m.attributes == {"route": "/x"}


def test_filters_run_on_background_thread_and_count(make_collector, sink):
    threads = set()

    def callable_filter(metrics):
        threads.add(threading.get_ident())
        return None if metrics.request_id == "r1" else metrics

    class Broken:
        def filter(self, metrics):
            if metrics.request_id == "r2":
                raise RuntimeError("redaction failed")
            return metrics

    class WrongType:
        def filter(self, metrics):
            return "oops" if metrics.request_id == "r3" else metrics

    collector = make_collector(
        [sink],
        filters=[callable_filter, Broken(), WrongType(), AttributeFilter(add={"env": "test"})],
    )
    for i in range(5):
        collector.record(request_record(i))
    assert collector.flush(5)
    assert threading.get_ident() not in threads and threads
    assert [m.request_id for m in sink.records] == ["r0", "r4"]
    assert all(m.attributes == {"env": "test"} for m in sink.records)
    stats = collector.stats()
    assert stats.filtered == 1
    assert stats.dropped["filter_error"] == 2
    assert stats.unaccounted("recording") == 0
