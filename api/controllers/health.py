"""Liveness, readiness (database reachable, projection lag) and Prometheus metrics.

``/health/*`` are open (no key: a load balancer probes them); their OpenAPI operations
say so with an empty ``security``. ``/metrics`` takes any valid key, agents' included:
it shows counters and lags, no data of any agent.

While the database is away ``/health/ready`` answers ``503`` with ``Retry-After`` and
``checks.database`` naming the error, within the API pool's bounded waits
(``infrastructure.settings.DatabaseTimeouts``), and ``200`` again once a query gets
through: nothing needs restarting (docs/reliability.md, "Database outage").
``/health/live`` does not touch the database: the process is up either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import Gauge

from api.contract import problems
from api.errors import DATABASE_RETRY_AFTER
from api.schemas import Health
from projections.positions import status

# Beyond this many unprojected events the service answers, but says it is not ready.
READY_MAX_LAG = 10_000

PROJECTION_LAG = Gauge(
    "aimm_projection_lag_events", "Events not yet applied", ["projection", "context"]
)
PROJECTION_POSITION = Gauge(
    "aimm_projection_position", "Last applied notification id", ["projection", "context"]
)
LOG_HEAD = Gauge("aimm_log_head", "Newest notification id of a context's log", ["context"])


async def refresh_projection_gauges(request: Request[Any, Any, Any]) -> dict[str, int]:
    async with request.app.state.pool.acquire() as conn:
        rows = await status(conn)
    lag: dict[str, int] = {}
    for row in rows:
        PROJECTION_LAG.labels(row.projection, row.context).set(row.lag)
        PROJECTION_POSITION.labels(row.projection, row.context).set(row.position)
        LOG_HEAD.labels(row.context).set(row.head)
        lag[f"{row.projection}/{row.context}"] = row.lag
    return lag


@dataclass
class OpenOperation(Operation):
    """An operation that needs no credentials: ``security: []`` overrides the document's."""

    def __post_init__(self) -> None:
        self.security = []


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", operation_class=OpenOperation)
    async def live(self) -> Health:
        """The process is up and serving."""
        return Health(status="ok", checks={"process": "ok"})

    @get(
        "/ready",
        operation_class=OpenOperation,
        responses={
            503: ResponseSpec(
                Health,
                description="Not ready: the database does not answer (with `Retry-After`), "
                "or the projections lag too far behind (`checks` says which).",
                generate_examples=False,
            )
        },
    )
    async def ready(self, request: Request[Any, Any, Any]) -> Response[Health]:
        """Ready when the database answers and the projections are not far behind."""
        try:
            lag = await refresh_projection_gauges(request)
        except Exception as exc:  # noqa: BLE001 - any failure here means "not ready"
            body = Health(status="down", checks={"database": f"unreachable: {type(exc).__name__}"})
            return Response(body, status_code=503, headers={"Retry-After": DATABASE_RETRY_AFTER})
        worst = max(lag.values(), default=0)
        checks = {
            "database": "ok",
            "projections": "ok" if worst <= READY_MAX_LAG else f"lagging by {worst} events",
        }
        healthy = worst <= READY_MAX_LAG
        return Response(
            Health(status="ok" if healthy else "degraded", checks=checks, projection_lag=lag),
            status_code=200 if healthy else 503,
        )


class MetricsController(PrometheusController):
    """Prometheus text format; projection gauges are refreshed on each scrape."""

    path = "/metrics"

    @get(
        media_type="text/plain",
        tags=["health"],
        responses={k: v for k, v in problems().items() if k in (401, 503)},
    )
    async def get(self, request: Request[Any, Any, Any]) -> Response[str]:
        """Prometheus metrics (text exposition format) for any valid key, agents' included;
        the projection gauges are refreshed on each scrape."""
        await refresh_projection_gauges(request)
        response: Response[str] = await super().get.fn(self)
        return response
