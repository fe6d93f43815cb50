"""Prometheus metrics of every limiter and store (``docs/design.md#metrics``), whatever the engine.

The Rust core counts; this module renders. Metrics, labelled by ``limiter`` and
``store`` (``store`` and ``engine`` for store metrics), never by key, so the number
of series stays bounded however many clients are limited:

- ``ratesync_admitted_total``, ``ratesync_denied_total``, ``ratesync_timed_out_total``
- ``ratesync_store_errors_total``, ``ratesync_fail_open_total``
- ``ratesync_wait_seconds`` (histogram), ``ratesync_permits_in_use`` (gauge)
- ``ratesync_store_call_seconds`` (histogram), ``ratesync_circuit_open`` (gauge)

Three ways to expose them::

    # 1. FastAPI: a /metrics route (ratesync's metrics, plus prometheus_client's
    #    default registry when prometheus_client is installed)
    from ratesync.contrib.prometheus import add_metrics_route
    add_metrics_route(app)

    # 2. prometheus_client: one registry for everything
    from prometheus_client import REGISTRY
    from ratesync.contrib.prometheus import RatesyncCollector
    REGISTRY.register(RatesyncCollector())

    # 3. Any framework: the text itself
    from ratesync.contrib.prometheus import CONTENT_TYPE_LATEST, generate_latest
    body = generate_latest()
"""

from __future__ import annotations

from typing import Any, Iterator

from ratesync import _native

#: The content type of the text exposition format.
CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text() -> str:
    """Every ratesync metric of this process, as Prometheus text."""
    return _native.prometheus_text()


def generate_latest() -> bytes:
    """``metrics_text()`` as bytes, like ``prometheus_client.generate_latest``."""
    return metrics_text().encode("utf-8")


class RatesyncCollector:
    """A ``prometheus_client`` collector that yields ratesync's metrics, so they are
    served by whatever already serves the application's registry."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        yield from text_string_to_metric_families(metrics_text())

    def describe(self) -> list[Any]:
        # Series appear as limiters are built: nothing to declare up front (an empty
        # description also keeps registration from collecting early).
        return []


def _default_registry_text() -> bytes:
    try:
        from prometheus_client import REGISTRY
        from prometheus_client import generate_latest as client_generate_latest
    except ImportError:
        return b""
    return client_generate_latest(REGISTRY)


def metrics_endpoint(include_default_registry: bool = True) -> Any:
    """A FastAPI/Starlette endpoint that answers with the metrics in text format.

    With ``include_default_registry`` (the default), the metrics of
    ``prometheus_client``'s default registry follow ratesync's, when that package is
    installed. Do not also register ``RatesyncCollector`` on that registry, or the
    ratesync series would appear twice."""
    from starlette.responses import Response

    async def metrics() -> Response:
        body = generate_latest()
        if include_default_registry:
            body += _default_registry_text()
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def add_metrics_route(
    app: Any, path: str = "/metrics", include_default_registry: bool = True
) -> None:
    """Adds ``GET path`` serving the metrics to a FastAPI app (out of the schema)."""
    app.add_api_route(
        path,
        metrics_endpoint(include_default_registry),
        methods=["GET"],
        include_in_schema=False,
    )


__all__ = [
    "CONTENT_TYPE_LATEST",
    "RatesyncCollector",
    "add_metrics_route",
    "generate_latest",
    "metrics_endpoint",
    "metrics_text",
]
