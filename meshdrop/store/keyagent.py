"""The unlock agent: a small process that holds one sealed store's keys in memory, as
ssh-agent holds keys, so that commands between `meshdrop unlock` and `meshdrop lock` do
not pay the passphrase's key derivation (docs/FORMAT.md, "Sealed store").

The agent answers on a Linux abstract unix socket (no file on disk) named by a keyed hash
of the home's real path and the user id: the name says nothing about what it serves. It
answers only processes of its own user (SO_PEERCRED), and its clients talk only to an
agent of their own user. The keys reach it through a pipe on its standard input, never
argv, the environment or a file. It asks the kernel not to dump its memory or be traced
by other processes (PR_SET_DUMPABLE 0), and exits on `lock`, on `panic`, or when its
time is up.

Requests are one byte: ``K`` (the keys: the slots file's salt, 16 bytes, then the store
key, 32 bytes) or ``S`` (stop: the agent answers ``S`` and exits).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from meshdrop.core import storekeys
from meshdrop.core.storekeys import StoreKeys
from meshdrop.errors import StoreError
from meshdrop.store import sealing

ASK_KEYS = b"K"
STOP = b"S"
READY = b"R"
CONNECT_TIMEOUT = 5.0
_NAME_DOMAIN = b"store agent v1\0"
_PR_SET_DUMPABLE = 4
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_name(home: Path) -> bytes:
    """The abstract socket's name: NUL, then 32 hex digits of a hash of the home's real
    path and the user id."""
    real = os.fsencode(os.path.realpath(home))
    digest = hashlib.sha256(_NAME_DOMAIN + str(os.getuid()).encode() + b"\0" + real)
    return b"\0" + digest.hexdigest()[:32].encode()


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The (pid, uid) of the process at the other end of a unix socket."""
    pid, uid, _gid = _CRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    )
    return pid, uid


def _salt(home: Path) -> bytes:
    return sealing.read_slots(home).header.salt


# The client: what keys_for asks when this process holds no keys.


def _connect(home: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(socket_name(home))
        if peer_credentials(sock)[1] != os.getuid():
            sock.close()  # someone else's socket under our name: never trust it
            return None
    except OSError:
        sock.close()
        return None
    return sock


def _ask(sock: socket.socket, request: bytes, size: int) -> bytes:
    with sock:
        try:
            sock.sendall(request)
            answer = b""
            while len(answer) < size:
                part = sock.recv(size - len(answer))
                if not part:
                    break
                answer += part
            return answer
        except OSError:
            return b""


def lookup(home: Path) -> StoreKeys | None:
    """The keys the agent for ``home`` holds, or None: no agent, or one holding the keys
    of another slots file (the store was wiped or made anew since it was unlocked)."""
    sock = _connect(home)
    if sock is None:
        return None
    answer = _ask(sock, ASK_KEYS, storekeys.SALT_BYTES + storekeys.KEY_BYTES)
    if len(answer) != storekeys.SALT_BYTES + storekeys.KEY_BYTES:
        return None
    salt, root = answer[: storekeys.SALT_BYTES], answer[storekeys.SALT_BYTES :]
    try:
        if _salt(home) != salt:
            return None
    except StoreError:
        return None
    return StoreKeys(root)


def install() -> None:
    """Let sealing.keys_for ask the agent."""
    sealing.set_agent_lookup(lookup)


def is_running(home: Path) -> bool:
    sock = _connect(home)
    if sock is None:
        return False
    sock.close()
    return True


def stop(home: Path) -> bool:
    """Stop the agent for ``home`` (True if one was running). Its process is killed
    outright when it does not answer: panic cannot wait."""
    sock = _connect(home)
    if sock is None:
        return False
    pid = peer_credentials(sock)[0]
    if _ask(sock, STOP, 1) != STOP:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    return True


def start(home: Path, keys: StoreKeys, timeout: float | None) -> None:
    """Start an agent holding ``keys`` for ``home`` (one that runs already is stopped
    first) and return once it answers."""
    stop(home)
    salt = _salt(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshdrop.store.keyagent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
        env={k: v for k, v in os.environ.items() if "PASSPHRASE" not in k},
    )
    assert proc.stdin is not None and proc.stdout is not None
    request = struct.pack("!d", timeout or 0.0) + socket_name(home) + b"\n" + salt + keys.root
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except OSError as exc:
        raise StoreError("the unlock agent did not start") from exc
    ready = proc.stdout.read(1)
    proc.stdout.close()
    if ready != READY:
        proc.wait()
        raise StoreError("the unlock agent did not start (is another one running for this home?)")


# The agent itself: `python -m meshdrop.store.keyagent`, its request on standard input.


def _no_dumps() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _read_request() -> tuple[float, bytes, bytearray]:
    data = sys.stdin.buffer.read()
    timeout = struct.unpack("!d", data[:8])[0]
    name, _, rest = data[8:].partition(b"\n")
    return timeout, name, bytearray(rest)


def serve() -> int:
    _no_dumps()
    timeout, name, secret = _read_request()
    if len(secret) != storekeys.SALT_BYTES + storekeys.KEY_BYTES:
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(name)
        listener.listen(8)
    except OSError:
        return 1
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    os.close(sys.stdout.fileno())
    deadline = time.monotonic() + timeout if timeout > 0 else None
    try:
        _answer_until_stopped(listener, secret, deadline)
    finally:
        secret[:] = bytes(len(secret))
        listener.close()
    return 0


def _answer_until_stopped(
    listener: socket.socket, secret: bytearray, deadline: float | None
) -> None:
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            listener.settimeout(left)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return
        with conn:
            conn.settimeout(CONNECT_TIMEOUT)
            try:
                if peer_credentials(conn)[1] != os.getuid():
                    continue
                request = conn.recv(1)
                if request == ASK_KEYS:
                    conn.sendall(bytes(secret))
                elif request == STOP:
                    conn.sendall(STOP)
                    return
            except OSError:
                continue


if __name__ == "__main__":
    sys.exit(serve())
