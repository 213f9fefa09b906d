"""OTLPReceiver: a real OTLP metrics receiver on 127.0.0.1, over HTTP or gRPC, for tests.

It decodes every ``ExportMetricsServiceRequest`` (gzip included) with ``opentelemetry-proto``
and keeps them; :meth:`OTLPReceiver.points` flattens them into plain dicts, and
:meth:`OTLPReceiver.latest` keeps the newest point of each stream, which is the total for
cumulative temporality. Faults: answer the next exports with an HTTP status (or gRPC
``UNAVAILABLE``), or hang them until released.

    with OTLPReceiver("http") as receiver:
        sink = OTelMetricsSink(endpoint=receiver.endpoint)
"""

import gzip
import threading
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Tuple

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> Dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class OTLPReceiver:
    """Receives OTLP metric exports; see the module docstring. Thread-safe.

    Args:
        protocol: ``"http"`` (OTLP/HTTP protobuf) or ``"grpc"``.
        host, port: where to listen (port 0 picks a free one).
    """

    def __init__(self, protocol: str = "http", host: str = "127.0.0.1", port: int = 0) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError("protocol must be 'http' or 'grpc'")
        self.protocol = protocol
        self.host = host
        self.requests: List[metrics_service_pb2.ExportMetricsServiceRequest] = []
        #: HTTP headers of each export received (lower-case names), oldest first.
        self.headers: List[Dict[str, str]] = []
        self.refused = 0
        self._faults: Deque[int] = deque()
        # Reentrant: a wait_for() predicate may read points() while the condition holds it.
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self.release = threading.Event()
        self.hanging = False
        self._stopped = threading.Event()
        if protocol == "http":
            self._http = _HTTPServer((host, port), _Handler)
            self._http.owner = self
            self.port = int(self._http.server_address[1])
            self._thread: Optional[threading.Thread] = None
        else:
            self._grpc, self.port = _grpc_server(self, host, port)

    @property
    def endpoint(self) -> str:
        """What to give ``OTelMetricsSink(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "OTLPReceiver":
        if self.protocol == "http":
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._http.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    daemon=True,
                    name="otlp-receiver",
                )
                self._thread.start()
        else:
            self._grpc.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.release.set()
        if self.protocol == "http":
            if self._thread is not None:
                self._http.shutdown()
                self._thread.join(5)
            self._http.server_close()
        else:
            self._grpc.stop(grace=0.05)

    def __enter__(self) -> "OTLPReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` exports with ``status`` (gRPC: UNAVAILABLE)."""
        with self._lock:
            self._faults.extend([status] * count)

    def hang(self) -> None:
        """Hold every export until :attr:`release` is set (or the receiver stops)."""
        self.release.clear()
        self.hanging = True

    # ------------------------------------------------------------------ receiving
    def _receive(self, payload: bytes, headers: Optional[Dict[str, str]] = None) -> Optional[int]:
        """Store one export; return an error status to answer with, or None."""
        if headers is not None:
            with self._lock:
                self.headers.append(headers)
        if self.hanging:
            self.release.wait(30)
        with self._lock:
            if self._faults:
                self.refused += 1
                return self._faults.popleft()
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        request.ParseFromString(payload)
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
        return None

    def wait_for(self, predicate: Callable[["OTLPReceiver"], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every export) or ``timeout``."""
        with self._arrived:
            return self._arrived.wait_for(lambda: predicate(self), timeout)

    # ------------------------------------------------------------------ reading
    def points(self) -> List[Dict[str, Any]]:
        """Every data point received, oldest first, as dicts with ``resource``, ``name``,
        ``unit``, ``kind`` (sum, histogram, gauge), ``attributes`` and the values (``value``;
        or ``count``, ``sum``, ``bucket_counts``, ``bounds``), plus ``temporality`` and the
        instrumentation ``scope`` name."""
        with self._lock:
            requests = list(self.requests)
        out = []
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        for point in _flatten(resource, metric):
                            point["scope"] = scope.scope.name
                            out.append(point)
        return out

    def latest(self) -> Dict[Tuple[str, str, FrozenSet[Tuple[str, Any]]], Dict[str, Any]]:
        """The newest point per (service.instance.id, metric name, attribute set)."""
        result = {}
        for point in self.points():
            key = (
                str(point["resource"].get("service.instance.id")),
                point["name"],
                frozenset(point["attributes"].items()),
            )
            result[key] = point
        return result

    def total(self, name: str, **attributes: Any) -> float:
        """Sum over processes and attribute sets of the newest value (counters) or count
        (histograms) of metric ``name`` whose attributes include ``attributes``."""
        total = 0.0
        for (_, metric, _), point in self.latest().items():
            if metric != name or any(
                point["attributes"].get(k) != v for k, v in attributes.items()
            ):
                continue
            total += point["count"] if point["kind"] == "histogram" else point["value"]
        return total


def _flatten(resource: Dict[str, Any], metric: Any) -> List[Dict[str, Any]]:
    kind = metric.WhichOneof("data")
    data = getattr(metric, kind)
    base = {
        "resource": resource,
        "name": metric.name,
        "unit": metric.unit,
        "kind": kind,
        "temporality": getattr(data, "aggregation_temporality", None),
    }
    out = []
    for dp in data.data_points:
        point = dict(
            base,
            attributes=_attributes(dp.attributes),
            start=dp.start_time_unix_nano,
            time=dp.time_unix_nano,
        )
        if kind == "histogram":
            point.update(
                count=dp.count,
                sum=dp.sum,
                bucket_counts=list(dp.bucket_counts),
                bounds=list(dp.explicit_bounds),
            )
        else:
            point["value"] = dp.as_double if dp.HasField("as_double") else dp.as_int
        out.append(point)
    return out


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: OTLPReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        encoding = self.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path.rstrip("/") != "/v1/metrics":
            self._answer(404, b"")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = self.server.owner._receive(body, headers)
        if status is not None:
            self._answer(status, b"")
            return
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self._answer(200, reply)

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _grpc_server(owner: OTLPReceiver, host: str, port: int) -> Tuple[Any, int]:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

    class Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            status = owner._receive(request.SerializeToString())
            if status is not None:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"refused ({status})")
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
