"""MetricsMiddleware: every LLM record made while serving a request carries its route."""

from typing import Any, Callable

from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

from ... import metrics_context
from .apps import metrics_settings


class MetricsMiddleware:
    """Runs each view inside ``metrics_context(http.route=<resolved pattern>,
    http.method=...)``; the context is removed when the response is done, also when the view
    raised. Raises ``MiddlewareNotUsed`` when ``STEER_LLM_METRICS["enabled"]`` is False."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not metrics_settings()["enabled"]:
            raise MiddlewareNotUsed("STEER_LLM_METRICS['enabled'] is False")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            context = request.__dict__.pop("_steer_llm_context", None)
            if context is not None:
                context.__exit__(None, None, None)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> None:
        # The route is known only once the URL is resolved, just before the view runs.
        match = request.resolver_match
        route = "/" + match.route if match is not None and match.route else "<unmatched>"
        context = metrics_context(**{"http.route": route, "http.method": request.method})
        context.__enter__()
        request.__dict__["_steer_llm_context"] = context
