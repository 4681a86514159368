"""What `meshdrop export` prints: a line per bundle with its size, then the totals, and
"safe to remove" once everything written is synced (text, or JSON lines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.cli.common import emit_json, human_size, plural, printable

if TYPE_CHECKING:
    from meshdrop.transports.courier.exportplan import ExportReport
    from meshdrop.transports.courier.runs import ExportResult


def print_export(result: ExportResult, folder: Path, as_json: bool) -> None:
    summary = result.summary
    for report in summary.reports:
        if as_json:
            emit_json({**report.to_json(), "dry_run": summary.dry_run})
        else:
            click.echo(_export_line(report, summary.dry_run), err=report.exit_code != 0)
    if as_json:
        emit_json({"summary": _export_totals(result, folder)})
    else:
        _print_export_totals(result, folder)


def _export_line(report: ExportReport, dry_run: bool) -> str:
    from meshdrop.transports.courier.exportplan import Done

    outcome = report.done.value
    if report.done in (Done.WRITTEN, Done.REPLACED, Done.REPAIRED):
        outcome = ("would be " if dry_run else "") + outcome + f", {human_size(report.size)}"
    elif report.done is Done.ALREADY_THERE:
        outcome += f", {human_size(report.size)}"
    return f"{report.name} v{report.version}: {outcome}: {printable(report.detail)}"


def _export_totals(result: ExportResult, folder: Path) -> dict[str, object]:
    summary = result.summary
    return {
        "folder": str(folder),
        "dry_run": summary.dry_run,
        "written": result.written,
        "written_bytes": result.written_bytes,
        "already_there": result.already_there,
        "left_out": result.left_out,
        "left_out_bytes": result.left_out_bytes,
        "failed": result.failed,
        "free_bytes": summary.free,
        "publisher_files": summary.publishers_written,
        "removed": summary.removed,
        "notes": summary.notes,
        "safe_to_remove": summary.synced,
        "exit_code": result.exit_code,
    }


def _print_export_totals(result: ExportResult, folder: Path) -> None:
    summary = result.summary
    for note in summary.notes:
        click.echo(f"note: {printable(note)}")
    if summary.publishers_written:
        verb = "would be written" if summary.dry_run else "written"
        click.echo(f"publisher files {verb}: " + ", ".join(summary.publishers_written))
    if summary.removed:
        click.echo("removed older copies: " + ", ".join(summary.removed))
    counts = f"{result.already_there} already there, {result.left_out} left out"
    if result.left_out:
        counts += f" ({human_size(result.left_out_bytes)})"
    if result.failed:
        counts += f", {result.failed} failed"
    bundles, size = plural(result.written, "bundle"), human_size(result.written_bytes)
    if summary.dry_run:
        click.echo(
            f"{folder}: dry run, nothing written: {bundles} would be written ({size}), "
            f"{counts}; {human_size(summary.free)} free"
        )
        return
    click.echo(f"{folder}: {bundles} written ({size}), {counts}")
    if summary.synced:
        click.echo(f"safe to remove: everything written to {folder} is synced")
