"""Debug views: the summary as JSON, the dashboard page, the usage series it polls (JSON) and
the ``doctor()`` findings as JSON
(off unless enabled, staff only unless ``STEER_LLM_METRICS["authorize"]`` says otherwise);
the Prometheus view (off unless ``prometheus_endpoint``; bearer token when
``prometheus_token`` is set)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from ... import doctor
from .._auth import bearer_matches
from ..dashboard import DASHBOARD_CSP, render_dashboard, summary_payload, usage_payload
from .apps import metrics_settings


def _guard(request: HttpRequest) -> float:
    options = metrics_settings()
    if not options["debug_endpoints"]:
        raise Http404("LLM metrics debug endpoints are disabled")
    authorize = options["authorize"]
    if authorize is not None:
        allowed = authorize(request)
    else:
        user = getattr(request, "user", None)
        allowed = bool(user is not None and user.is_active and user.is_staff)
    if not allowed:
        raise PermissionDenied("not allowed to see LLM metrics")
    return float(options["window_seconds"])


def debug_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(summary_payload(None, _guard(request)))


def debug_dashboard(request: HttpRequest) -> HttpResponse:
    page = render_dashboard(None, _guard(request))
    response = HttpResponse(page, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = DASHBOARD_CSP
    return response


def debug_usage(request: HttpRequest) -> JsonResponse:
    """Tokens and cost per route and model over time (what the dashboard polls)."""
    response = JsonResponse(usage_payload(None, _guard(request)))
    response["Cache-Control"] = "no-store"  # polled: always the newest numbers
    return response


def debug_doctor(request: HttpRequest) -> JsonResponse:
    """What :func:`~steer_llm_sdk.observability.doctor` finds in this worker (HTTP 200
    whatever the findings; the body's ``status`` says)."""
    _guard(request)
    return JsonResponse(doctor().to_dict())


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    options = metrics_settings()
    if not options["prometheus_endpoint"]:
        raise Http404("the Prometheus endpoint is disabled")
    token = options["prometheus_token"]
    if token and not bearer_matches(request.headers.get("Authorization"), token):
        return HttpResponse("unauthorised", status=401)
    from ...sinks.prometheus import exposition

    body, content_type = exposition(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
