"""Builds the Litestar application: routes, problem handlers, the API- and admin-role pools,
OpenAPI."""

from __future__ import annotations

import logging
import time

from litestar import Litestar
from litestar.datastructures import State

from control_plane import problems
from control_plane.admission import RequestClass
from control_plane.config import MAX_BODY_BYTES, Settings, load_settings
from control_plane.database import create_admin_pool, create_pool
from control_plane.feed import FeedHub, OwnReads, Reauthorizations, SharedReads
from control_plane.gc_tuning import tune_gc
from control_plane.heartbeats import HeartbeatCoalescer
from control_plane.methods import ControlPlaneApp
from control_plane.metrics import MetricsMiddleware
from control_plane.openapi import document_contract, document_request_bodies, openapi_config
from control_plane.overload import start_overload_protection, stop_overload_protection
from routes.admin import admin_router
from routes.bench import bench_routes
from routes.events import authorize_fetch, own_fetch, shared_fetch
from routes.ops import healthz, metrics, readyz
from routes.runtime_nodes import runtime_node_router


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    async def open_pool(app: Litestar) -> None:
        app.state.pool = await create_pool(settings)
        app.state.admin_pool = await create_admin_pool(settings)
        app.state.heartbeats = HeartbeatCoalescer(
            app.state.pool,
            max_batch=settings.heartbeat_max_batch,
            max_in_flight=settings.heartbeat_max_in_flight,
            max_queued=settings.heartbeat_max_queued,
        )
        # One LISTEN connection per worker wakes the change feed's waiting requests.
        app.state.feed = FeedHub(settings)
        app.state.feed.start()
        # Followers woken together share one read, made with the first one's own credential;
        # only followers whose own authorization is fresh are handed its results
        # (routes/events.py).
        api_pool, admin_pool = app.state.pool, app.state.admin_pool
        app.state.feed_reads = SharedReads(
            lambda session, after, digest: shared_fetch(
                api_pool, admin_pool, session, after, digest
            )
        )

        start_overload_protection(app, settings)

        # Own reads of the same page that are due together share one call (and one admission
        # slot of the read class), each caller authorized with its own token.
        read_gate = app.state.admission.gates[RequestClass.READ]
        app.state.feed_own_reads = OwnReads(
            lambda: read_gate, lambda key, digests: own_fetch(api_pool, key, digests)
        )
        # Idle SSE streams' periodic re-checks, due together on a grid: one call per instant.
        app.state.feed_reauthorizations = Reauthorizations(
            lambda: read_gate, lambda key, items: authorize_fetch(api_pool, key, items)
        )

    async def close_pool(app: Litestar) -> None:
        await stop_overload_protection(app)
        await app.state.feed.close()
        # Each waits for its in-flight calls: a drained shutdown.
        await app.state.pool.close()
        await app.state.admin_pool.close()

    app = ControlPlaneApp(
        route_handlers=[
            admin_router,
            runtime_node_router,
            healthz,
            readyz,
            metrics,
            *bench_routes(settings),
        ],
        middleware=[MetricsMiddleware],
        on_startup=[open_pool, tune_gc],  # tune_gc last: the app is built by then
        on_shutdown=[close_pool],
        state=State({"settings": settings, "started_monotonic": time.monotonic()}),
        request_max_body_size=MAX_BODY_BYTES,
        exception_handlers=problems.exception_handlers(),
        openapi_config=openapi_config(),
        debug=False,
    )
    return document_contract(document_request_bodies(app))
