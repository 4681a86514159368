"""meshdrop.transports.courier"""
