"""meshdrop.transports"""
