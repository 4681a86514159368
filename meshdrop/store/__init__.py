"""The node's store: a SQLite index plus content-addressed chunk files.

Every source (a file, a stick, a peer) goes through one ingest path: stage, verify while
copying, commit atomically. Only what was committed is ever listed or read.
"""
