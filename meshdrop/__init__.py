"""meshdrop: signed content bundles that travel by LAN and by hand, never by internet."""

__version__ = "0.1.0"
