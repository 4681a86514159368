"""Every command pays for the command line's imports: keep the heavy libraries (the event
loop, the HTTP stack, mDNS, templates, progress bars) out of it, loaded only by the
commands that use them. A check on what is loaded, not a timing."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("asyncio", "aiohttp", "zeroconf", "jinja2", "tqdm", "markdown_it", "segno")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        f"import sys, meshdrop.cli.main; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"importing meshdrop.cli.main loads {loaded}"


def test_the_installed_command_freezes_its_start_up_and_leaves_the_collector_on() -> None:
    code = (
        "import gc, importlib.metadata as m; "
        "(e,) = m.entry_points(group='console_scripts', name='meshdrop'); "
        "main = e.load(); print(e.value, gc.isenabled(), gc.get_freeze_count() > 10000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["meshdrop.cli.entry:main", "True", "True"]
