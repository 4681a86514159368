"""`meshdrop status`: ask the node running for a home what it is doing."""

from __future__ import annotations

from typing import Any

import click

from meshdrop.cli.common import emit_json, home_path, human_size


@click.command(epilog="Example: meshdrop --home ~/node status --json")
@click.option("--json", "as_json", is_flag=True, help="The whole status as one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Ask the node running for this home what it is doing: peers, transfers, totals."""
    import asyncio

    from meshdrop.transports.lan.nodefile import ask_status

    info = asyncio.run(ask_status(home_path(ctx)))
    if as_json:
        emit_json(info)
        return
    _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    click.echo(f"node          pid {info['pid']}, up {info['uptime_seconds']} s")
    click.echo(f"listening     {', '.join(info['urls'])}")
    inventory = info["inventory"]
    click.echo(
        f"holds         {inventory['entries'] - inventory['publishers']} bundles of "
        f"{inventory['publishers']} publishers (digest {inventory['digest']})"
    )
    fetched = info["fetched"]
    click.echo(
        f"fetched       {fetched['bundles']} bundles, {human_size(fetched['bytes'])} "
        f"in {fetched['syncs']} syncs; refused {fetched['refused']}"
    )
    served = info["served"]
    click.echo(
        f"served        {served['requests']} requests, {served['chunks']} chunks, "
        f"{human_size(served['bytes'])}"
    )
    for circle, port in (info.get("circles") or {}).items():
        click.echo(f"circle        {circle}: members only, TLS on port {port} ({info['mode']})")
    conns = info.get("connections") or {}
    if conns:
        click.echo(
            f"connections   {conns['open']} open of {conns['limit']} allowed "
            f"({conns['per_address']} per address), {conns['peers']} from peers; "
            f"closed {conns['closed_idle']} idle, {conns['closed_for_room']} for room; "
            f"refused {conns['refused']}"
        )
    for peer in info["peers"]:
        state = "alive" if peer["alive"] else "unreachable"
        if peer["banned"]:
            state = "ignored (misbehaved)"
        if peer["syncing"]:
            state += ", syncing"
        how = "mDNS" if peer["discovered"] else "it reached us" if peer.get("inbound") else "--peer"
        click.echo(f"peer          {peer['peer']} ({how}): {state}")
    for t in info["transfers"]:
        done = t["chunks_total"] - t["chunks_left"]
        click.echo(
            f"fetching      {t['name']} v{t['version']}: {done}/{t['chunks_total']} chunks "
            f"from {', '.join(t['sources']) or 'nobody yet'}"
        )
    if not info["peers"]:
        click.echo("peer          none found yet")
