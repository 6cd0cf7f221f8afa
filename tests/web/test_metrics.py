"""``GET /metrics`` of the web app: Prometheus text, requests counted by route template and status."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_template_never_by_path(client: httpx.Client) -> None:
    def counted(found: dict, route: str) -> float:  # type: ignore[type-arg]
        return sum(
            v for (n, labels), v in found.items() if n == "digest_web_requests_total" and ("route", route) in labels
        )

    before = samples(client)

    client.get("/confirm/not-a-real-token-1")
    client.get("/confirm/not-a-real-token-2")
    client.get("/no/such/page")
    after = samples(client)

    assert counted(after, "/confirm/{token}") - counted(before, "/confirm/{token}") == 2
    assert counted(after, "other") - counted(before, "other") == 1
    routes = {dict(labels)["route"] for (n, labels) in after if n == "digest_web_requests_total"}
    assert not any("not-a-real-token" in r for r in routes)


def test_metrics_include_the_store_gauges(client: httpx.Client) -> None:
    found = samples(client)

    assert found[("digest_store_up", ())] == 1
    assert found[("digest_queue_depth", ())] == 0
    assert ("digest_deliveries", (("status", "sent"),)) in found
    assert ("digest_feeds", (("status", "error"),)) in found
