"""The composition root: wire a store and the actor system to the Quart-Trio app and serve it."""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework
from quart_schema import QuartSchema
from quart_trio import QuartTrio

from actors import System, SystemConfig, open_system
from api._auth import Passwords, Tokens
from api._blobs import DirectoryBlobs
from api._code_throttle import CodeThrottle
from api._codes import Codes
from api._config import Settings
from api._console import console
from api._cors import install_cors
from api._docs import SwitchboardOpenAPI, docs
from api._early_answer import CloseAfterEarlyAnswer
from api._errors import install_error_handlers
from api._forms import allow_image_bodies
from api._gc import keep_collections_short
from api._hypercorn import ServerConfig, adjust_hypercorn
from api._json_body import limit_body_depth
from api._mail import Outbox
from api._observed_store import observe_store
from api._ops import ops
from api._paths import CONVERTERS
from api._quart_websocket import DirectWebsocket
from api._rates import Throttles
from api._request_log import install_request_log
from api._routes_accounts import accounts
from api._routes_admin_chats import admin_chats
from api._routes_admin_routing import admin_routing
from api._routes_admin_users import admin_users
from api._routes_auth import auth
from api._routes_chats import chats
from api._routes_dashboard import dashboard
from api._routes_dev import dev
from api._routes_messages import messages
from api._routes_notifications import notifications
from api._security_headers import install_security_headers
from api._services import EXTENSION_KEY, Services
from api._shop_profile import open_shop_profiles
from api._signin_throttle import SignInThrottle
from api._socketio import socketio
from api._stopping import stopping_event
from api._uploads import uploads
from api._ws import ws
from cluster import ClusterConfig, default_node_id, open_cluster
from store import Backend, open_store
from telemetry import watch_runtime


def create_app(found: Services) -> QuartTrio:
    # No static folder: nothing under the working directory is ever served by accident.
    app = QuartTrio("switchboard", static_folder=None)
    app.asgi_websocket_class = DirectWebsocket
    app.url_map.converters.update(CONVERTERS)
    # As Express matched them: `/profile/` is `/profile` (no redirect), on every route.
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = found.settings.max_body_bytes
    app.extensions[EXTENSION_KEY] = found
    QuartSchema(
        app,
        info={"title": "Switchboard", "version": "0.1.0"},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
        pydantic_dump_options={"by_alias": True},
        openapi_provider_class=SwitchboardOpenAPI,
        # quart-schema's own docs pages load their assets from CDNs; /docs serves them locally.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    limit_body_depth(app)
    allow_image_bodies(app, found.settings.max_image_bytes)
    install_error_handlers(app)
    install_cors(app)
    install_request_log(app)
    install_security_headers(app)
    for blueprint in (
        auth,
        accounts,
        dev,
        ws,
        socketio,
        chats,
        messages,
        notifications,
        dashboard,
        admin_users,
        admin_chats,
        admin_routing,
        uploads,
        docs,
        console,
        ops,
    ):
        app.register_blueprint(blueprint)
    return app


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the configured store and the actor system on it, for as long as the block runs."""
    async with open_store(settings.store_url) as opened:
        store = observe_store(opened)
        async with (
            _open_domain(store, settings) as system,
            open_shop_profiles(
                settings.customer_profile_url,
                timeout_seconds=settings.customer_profile_timeout_seconds,
                cache_seconds=settings.customer_profile_cache_seconds,
            ) as profiles,
        ):
            yield Services(
                settings=settings,
                store=store,
                system=system,
                tokens=Tokens(settings, store, profiles),
                passwords=Passwords(
                    concurrency=settings.password_hash_concurrency,
                    queue_seconds=settings.password_queue_seconds,
                ),
                outbox=Outbox(store, settings),
                codes=Codes(settings),
                throttles=Throttles.of(settings),
                signins=SignInThrottle(store, settings),
                code_throttle=CodeThrottle(store, settings.code_window_seconds),
                blobs=DirectoryBlobs(settings.uploads_path),
            )


@asynccontextmanager
async def _open_domain(store: Backend, settings: Settings) -> AsyncIterator[System]:
    """The domain on this process alone, or this process's part in a cluster."""
    config = SystemConfig(grace_period_seconds=settings.grace_period_seconds)
    if settings.bus_url is None:
        async with open_system(store, config) as system:
            yield system
        return
    node = ClusterConfig(
        node_id=settings.node_id or default_node_id(), lease_seconds=settings.lease_seconds
    )
    async with open_cluster(store, settings.bus_url, node, config) as clustered:
        yield clustered


async def serve(
    found: Services,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on the configured host and port, with the outbox's sender beside; reports the
    bound URLs once listening."""
    app = create_app(found)
    trigger = shutdown_trigger
    if shutdown_trigger is not None:
        told = shutdown_trigger
        going_away = stopping_event(app)

        async def stop_gracefully() -> None:
            await told()
            # The HTTP server stops accepting when this returns; every websocket closes (1001).
            going_away.set()

        trigger = stop_gracefully
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_runtime)
        await nursery.start(found.outbox.run)
        await serve_asgi(
            CloseAfterEarlyAnswer(app),
            found.settings,
            shutdown_trigger=trigger,
            task_status=task_status,
        )
        nursery.cancel_scope.cancel()


class CannotListen(Exception):
    """The server cannot listen where it was told to; the message says what to do."""


def _sole_error(error: BaseException) -> BaseException:
    """The one error inside nested one-error groups (hypercorn's nurseries wrap its bind)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _cannot_listen(settings: Settings, error: OSError) -> CannotListen:
    where = f"{settings.host}:{settings.port}"
    match error.errno:
        case errno.EADDRINUSE:
            advice = (
                "another process listens there; stop it, or pick another port with --port or "
                "SWITCHBOARD_PORT (0 picks a free one)"
            )
        case errno.EACCES:
            advice = "ports below 1024 need privileges; use a port above 1023 behind a proxy"
        case errno.EADDRNOTAVAIL:
            advice = (
                "no interface of this machine has that address; check --host or SWITCHBOARD_HOST"
            )
        case _:
            advice = error.strerror or str(error)
    return CannotListen(f"cannot listen on {where}: {advice}")


async def serve_asgi(
    app: ASGIFramework,
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an ASGI app as the server serves ours (the benchmarks' floor uses it too)."""
    config = ServerConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None  # every request is logged by the app (api/_request_log.py)
    config.errorlog = logging.getLogger("hypercorn.error")
    # The websocket's frame cap (closes with 1009) and keep-alive pings, enforced by hypercorn.
    config.websocket_max_message_size = settings.ws_max_frame_bytes
    config.websocket_ping_interval = settings.ws_ping_interval_seconds
    # Every connection ends with its peer (api/_hypercorn.py).
    config.websocket_ping_timeout = settings.ws_ping_timeout_seconds
    config.websocket_close_timeout = settings.ws_close_timeout_seconds
    config.send_timeout = settings.ws_ping_timeout_seconds
    # A connection waiting for its first or next request (api/_hypercorn.py, `IdleTimer`).
    config.keep_alive_timeout = settings.http_keep_alive_seconds
    # Stopping: how long in-flight requests and closing websockets have before they are cut.
    config.graceful_timeout = settings.stop_timeout_seconds
    adjust_hypercorn()

    async with trio.open_nursery() as nursery:

        async def serving(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app, config, shutdown_trigger=shutdown_trigger, task_status=task_status
            )
            nursery.cancel_scope.cancel()  # served: the collector's policy ends with it

        try:
            binds = await nursery.start(serving)
        except BaseExceptionGroup as group:
            error = _sole_error(group)
            if isinstance(error, OSError):
                raise _cannot_listen(settings, error) from None
            raise
        # Once start-up is done, so that what it made is frozen at once (api/_gc.py).
        await nursery.start(keep_collections_short)
        task_status.started(binds)
