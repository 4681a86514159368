"""meshdrop.reader: the web app people read with, in any phone browser on the network.

It shows only what the store committed and verified (state "ok": a trusted publisher,
neither withdrawn nor expired); anything else is one identical 404 page.

Using it
--------
- Standalone: ``meshdrop --home H read [--bind 127.0.0.1] [--port 8080]``
  (``meshdrop/cli/reader.py``, ``meshdrop/reader/serve.py``).
- In the LAN node (one aiohttp server for peers and readers): aiohttp cannot mount a
  sub-application at "/" (``add_subapp`` refuses an empty prefix), so the reader is
  added to the node's root application instead, with ``install_reader``; this fits
  ``make_node_app(..., hook=...)`` in ``meshdrop/transports/lan/node.py``::

      hook = lambda app: install_reader(app, home, share_urls=lambda: node.urls)

  It adds the reader's routes (its catch-all 404 only takes paths no other route or
  sub-application claims, so /peer/v1/ and /node/ keep theirs), its start-up and
  clean-up, and the Server-header removal. ``make_reader_app(home, share_urls)`` gives
  the reader as an application of its own (what ``meshdrop read`` runs), to which other
  applications can also be added under their prefixes.

  Run either with ``web.AppRunner(app, access_log=None)``: no per-request log, ever.
  ``share_urls`` returns the node's current ``http://ADDRESS:PORT/`` URLs (addresses
  change with DHCP); the share page shows them, with a QR code for the first.

Safety (see docs/THREATS.md, "The reader")
------------------------------------------
- Every reader page carries a strict CSP (``default-src 'self'``, ``script-src 'none'``):
  the reader runs no JavaScript at all, and every asset (CSS, icon) is served by the node.
  Fonts are the system's own.
- URLs name nothing: opaque per-node ids, ``/b/<bid>/``, ``/b/<bid>/v/<fid>``,
  ``/b/<bid>/f/<fid>`` (``readerids.py``); searches are POSTs.
- Every publisher response carries the bundle's own CSP (``sandbox``, loads only from
  ``/b/<bid>/f/``, never framed; ``headers.publisher_csp``); an HTML article's view is
  the rewritten publisher page itself under a small reader bar (``article.py``).
- No cookie but ``lang`` (a session cookie set by the language link) and, with an access
  code (``access_code``, ``accesscode.py``), ``access``; no ``Server:``
  header; ``Cache-Control: no-store`` so what was read does not stay in the browser cache.

Limits
------
The reader has its own: a semaphore for pages (PAGE_SLOTS) and one for publisher files
being sent (STREAM_SLOTS), one thread for index queries and a small pool for reading
chunks (``library.py``). The peer API keeps its own limits and threads, so a crowd of
readers cannot stall sync and a flood of peer requests cannot stall readers. Requests
beyond a limit wait up to QUEUE_SECONDS, then get a 503 page.

Why jinja2: pages mix interface text with untrusted text (titles, descriptions, names,
paths, search snippets). jinja2's autoescaping templates escape every value unless it
is marked safe on purpose, which is far safer than hand-built HTML strings, where one
forgotten ``html.escape`` is a hole.
"""

from meshdrop.reader.app import install_reader, make_reader_app

__all__ = ["install_reader", "make_reader_app"]
