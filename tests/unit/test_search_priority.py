"""The reader's search indexing runs at a lower CPU priority than the node (issue 19: the
reader's pages during a sync share a small machine with it)."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection
from pathlib import Path

from meshdrop.reader.searching import INDEXER_NICE, SearchService


def _send_own_nice(pipe: Connection) -> None:
    pipe.send(os.getpriority(os.PRIO_PROCESS, 0))


def _nice_of_a_spawned_child() -> int:
    """Start a child as SearchService._run_child_once does (spawn) and ask its nice value."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_send_own_nice, args=(theirs,))
    child.start()
    try:
        return int(ours.recv())
    finally:
        child.join()


def test_indexing_children_run_at_a_lower_cpu_priority(tmp_path: Path) -> None:
    service = SearchService(tmp_path)
    try:
        node = os.getpriority(os.PRIO_PROCESS, 0)
        child = service._starter.submit(_nice_of_a_spawned_child).result(timeout=60)
        assert child == min(19, node + INDEXER_NICE)
        assert os.getpriority(os.PRIO_PROCESS, 0) == node  # the node's own threads unchanged
    finally:
        service._starter.shutdown()
        service._thread.shutdown()
