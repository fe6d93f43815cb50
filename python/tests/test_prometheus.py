"""ratesync.contrib.prometheus: the core's metrics as Prometheus text."""

import re

import pytest

import ratesync
from ratesync.contrib.prometheus import (
    CONTENT_TYPE_LATEST,
    RatesyncCollector,
    add_metrics_route,
    generate_latest,
    metrics_text,
)


def sample(text: str, metric: str, limiter: str) -> float:
    """The value of `metric` for `limiter` (labels in any order), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'limiter="{limiter}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_admissions_and_refusals_are_counted_per_limiter(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=3, timeout=0)
    for _ in range(3):
        await ratesync.acquire(name)
    for _ in range(2):
        with pytest.raises(ratesync.RateLimiterAcquisitionError):
            await ratesync.acquire(name)
    text = metrics_text()
    assert sample(text, "ratesync_admitted_total", name) == 3
    assert sample(text, "ratesync_denied_total", name) + sample(
        text, "ratesync_timed_out_total", name
    ) >= 2
    assert f'store="{store}"' in text
    assert "# HELP ratesync_admitted_total" in text


async def test_keys_never_become_labels(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=1000.0, burst=10)
    for i in range(50):
        await ratesync.acquire(name, key=f"client-{i}")
    text = metrics_text()
    assert "client-" not in text
    assert sample(text, "ratesync_admitted_total", name) == 50


async def test_permits_in_use_follow_concurrency_slots(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=3)
    async with ratesync.acquire(name):
        async with ratesync.acquire(name):
            assert sample(metrics_text(), "ratesync_permits_in_use", name) == 2
    assert sample(metrics_text(), "ratesync_permits_in_use", name) == 0


async def test_waits_fill_the_wait_histogram(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=50.0, burst=1)
    for _ in range(3):
        await ratesync.acquire(name)
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text().splitlines()
        if line.startswith("ratesync_wait_seconds_count") and f'limiter="{name}"' in line
    ]
    assert counts and counts[0] >= 2


def test_the_text_parses_with_prometheus_client(store, name):
    parser = pytest.importorskip("prometheus_client.parser")
    ratesync.configure_limiter(name, store, rate_per_second=10.0)
    ratesync.sync.acquire(name)
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics_text())}
    admitted = families["ratesync_admitted"]
    assert any(s.labels.get("limiter") == name and s.value == 1 for s in admitted.samples)


def test_collector_serves_them_from_a_prometheus_client_registry(store, name):
    client = pytest.importorskip("prometheus_client")
    registry = client.CollectorRegistry()
    registry.register(RatesyncCollector())
    ratesync.configure_limiter(name, store, rate_per_second=10.0)
    ratesync.sync.acquire(name)
    assert registry.get_sample_value(
        "ratesync_admitted_total", {"limiter": name, "store": store}
    ) == 1


def test_fastapi_route_answers_with_the_text_format(store, name):
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    ratesync.configure_limiter(name, store, rate_per_second=10.0)
    ratesync.sync.acquire(name)
    app = FastAPI()
    add_metrics_route(app)
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert re.search(rf'ratesync_admitted_total{{[^}}]*limiter="{name}"[^}}]*}} 1', response.text)
    assert "/metrics" not in app.openapi()["paths"]


def test_generate_latest_is_bytes():
    assert isinstance(generate_latest(), bytes)
