"""The worker's web pages: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import faust_internals

__all__ = ["register_pages"]


def register_pages(app: Any, is_ready: Callable[[], bool], worker: Any) -> None:
    """Add ``/metrics``, ``/healthz`` and ``/readyz`` to a Faust app's web server."""

    async def metrics(web: Any, request: Any) -> Any:
        """Prometheus exposition of the service's own metrics."""
        # aiohttp refuses a charset inside content_type; the exposition format is plain UTF-8 text.
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def healthz(web: Any, request: Any) -> Any:
        """Liveness: the process answers."""
        return web.json({"status": "ok"})

    async def readyz(web: Any, request: Any) -> Any:
        """Readiness, with the reasons when not ready."""
        scorer = worker.live_model.scorer
        body = {
            "ready": is_ready(),
            "model": scorer.version if scorer else None,
            "recovering": bool(app.in_recovery),
            "alerting": worker.alerting is not None,
            "in_group": faust_internals.in_group(app),
        }
        return web.json(body, status=200 if body["ready"] else 503)

    app.page("/metrics", name="metrics")(metrics)
    app.page("/healthz", name="healthz")(healthz)
    app.page("/readyz", name="readyz")(readyz)
