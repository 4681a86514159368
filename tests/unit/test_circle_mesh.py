"""The node's circle side, parts that need no network (transports/lan/circlemesh.py):
which context a peer is called with, which port a hello introduces, and the warning
for a clock far behind (issue 16)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from meshdrop.core.circles import EPOCH_SECONDS, CircleSecret, new_circle
from meshdrop.transports.lan.circlemesh import CircleMesh, clock_behind, mode_event
from meshdrop.transports.lan.limits import ConnectionLimits
from meshdrop.transports.lan.serverguard import ConnectionGuard


def _mesh(quiet: bool) -> CircleMesh:
    circles = [new_circle(name, CircleSecret.generate(), int(time.time())) for name in "xy"]
    guard = ConnectionGuard(ConnectionLimits(total=16, per_address=8))
    return CircleMesh(circles, guard, quiet, web.Application)


def test_a_quiet_node_calls_every_peer_over_a_circle_and_an_open_one_only_members() -> None:
    async def scenario() -> None:
        for quiet in (True, False):
            mesh = _mesh(quiet)
            await mesh.start("127.0.0.1")
            try:
                x, y = mesh.listeners
                assert x.port != y.port and 0 not in (x.port, y.port)
                member = ("10.0.0.7", 4000)
                mesh.member(member, y.circle)
                assert mesh.port_for(member) == y.port
                assert mesh.tls_for(member) is y.tls.client_context()
                stranger = ("10.0.0.8", 4000)
                if quiet:  # never plain: an unknown --peer is called as the first circle's
                    assert mesh.tls_for(stranger) is x.tls.client_context()
                    assert mesh.port_for(stranger) == x.port
                else:
                    assert mesh.tls_for(stranger) is None and mesh.port_for(stranger) is None
                assert mode_event(mesh, quiet)["mode"] == ("quiet" if quiet else "open+circles")
                assert mode_event(mesh, quiet)["circles"] == {"x": x.port, "y": y.port}
            finally:
                await mesh.close()
        assert mode_event(None, False) == {"event": "mode", "mode": "open", "circles": {}}

    asyncio.run(scenario())


def test_a_clock_far_behind_the_newest_signed_content_is_told() -> None:
    now = 1_800_000_000.0
    assert clock_behind(now, int(now)) is None
    assert clock_behind(now, int(now + 2 * EPOCH_SECONDS)) is None  # inside the window
    warning = clock_behind(0.0, int(now))  # a Pi that booted in 1970
    assert warning is not None and "clock" in warning and "days behind" in warning
