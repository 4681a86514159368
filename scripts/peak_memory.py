"""Run a command; print its exit code and its peak resident memory in KiB.

    python scripts/peak_memory.py meshdrop --home H import STICK -q   ->   "0 81234"

Used by the tests and the benchmarks. A process's ru_maxrss keeps the high-water mark of
the memory it had before exec, which for a child started with subprocess's vfork is the
whole parent (a test run or a benchmark): 400 MB for /bin/true started from a 400 MB
process. This script is small; the command runs in a fresh fork of it. The command's
output goes where this script's goes.
"""

import os
import sys

if len(sys.argv) < 2:
    sys.exit("usage: peak_memory.py COMMAND [ARG...]")
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
