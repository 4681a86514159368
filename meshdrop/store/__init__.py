"""The node's store: a SQLite index plus content-addressed chunk files.

Every source (a file, a stick, a peer) goes through one ingest path: stage, verify while
copying, commit atomically. Only what was committed is ever listed or read.
"""

# The unlock agent's client and the duress action register with store/sealing.py here,
# so that every process that opens a store finds them.
from meshdrop.store import keyagent as _keyagent
from meshdrop.store import panic as _panic  # noqa: F401

_keyagent.install()
