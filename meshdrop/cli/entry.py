"""The installed `meshdrop` command's entry point (setup.cfg console_scripts).

Start-up creates only objects that live as long as the process (modules, classes,
click's command tree), so the cyclic garbage collector is kept out of it, and what start-up
made is frozen: neither the collections during the command nor the one at exit walk it
again. Measured: about 10 ms of the 100 ms that `meshdrop --version` takes here.
"""

import gc

gc.disable()

from meshdrop.cli.main import main  # noqa: E402

gc.freeze()
gc.enable()

__all__ = ["main"]
