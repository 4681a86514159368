"""meshdrop.transports.lan"""
