"""The node's web application: the peer API under /peer/v1/, the owner's status under
/node/, and whatever else (the reader) under its own prefixes or via a hook; answers
without a banner, errors in the node's own words, and peers' connections marked for
the guard (serverguard.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from meshdrop.transports.lan.nodefile import STATUS_PREFIX
from meshdrop.transports.lan.peerapi import PREFIX
from meshdrop.transports.lan.serverguard import ConnectionGuard, plain_errors, strip_banner

ExtraApps = Sequence[tuple[str, web.Application]]
AppHook = Callable[[web.Application], None]


def _peer_marker(guard: ConnectionGuard) -> Any:
    """A middleware telling the guard which connections carry peer API requests (kept
    open between a peer's rare pings; others are closed soon when idle)."""

    @web.middleware
    async def mark(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(PREFIX):
            guard.mark_peer(request.transport)
        return await handler(request)

    return mark


def make_node_app(
    peer_app: web.Application | None,
    status_app: web.Application | None = None,
    extra_apps: ExtraApps = (),
    hook: AppHook | None = None,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    """The one server's application: the peer API under /peer/v1/ (none in a quiet
    node: its peers are served on circle listeners), the owner's status under /node/,
    and whatever else (the reader) under its own prefixes or via ``hook``."""
    middlewares: list[Any] = [plain_errors]
    if guard is not None:
        middlewares.append(_peer_marker(guard))
    app = web.Application(client_max_size=64 * 1024, middlewares=middlewares)
    app.on_response_prepare.append(strip_banner)
    if peer_app is not None:
        app.add_subapp(PREFIX.rstrip("/"), peer_app)
    if status_app is not None:
        app.add_subapp(STATUS_PREFIX.rstrip("/"), status_app)
    for prefix, sub in extra_apps:
        app.add_subapp(prefix, sub)
    if hook is not None:
        hook(app)
    return app
