"""Named places where the crash-safety tests kill the process (SIGKILL, no clean-up),
chosen through MESHDROP_TEST_CRASH_AT. Unset in normal use, when this does nothing."""

from __future__ import annotations

import os
import signal

ENV = "MESHDROP_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
