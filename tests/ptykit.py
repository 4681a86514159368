"""Running the installed `meshdrop` on a pseudo-terminal, as a person at a terminal does:
stdin, stdout and stderr are the terminal, and a question is answered by typing."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from conftest import Result, command_env, meshdrop_executable

QUESTION_MARK = b"[y/N]"


def run_in_terminal(
    *args: str | Path, answer: str | None, env: dict[str, str] | None = None, limit: float = 120
) -> Result:
    """Run meshdrop on a new pseudo-terminal; once it asks a "[y/N]" question, type
    ``answer`` and Enter. Everything the terminal showed is in ``out`` (``err`` is empty:
    a terminal has one screen). ``limit`` only stops a hung run; nothing here is timed."""
    full_env = command_env(env)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [meshdrop_executable(), *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=full_env,
        start_new_session=True,
    )
    os.close(slave)
    shown = b""
    answered = False
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if answer is not None and not answered and QUESTION_MARK in shown:
                os.write(master, answer.encode() + b"\r")
                answered = True
        else:
            raise AssertionError(f"meshdrop {args} did not end; it showed {shown!r}")
        code = proc.wait(timeout=limit)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return Result(code, shown.decode("utf-8", errors="replace").replace("\r\n", "\n"), "")
