"""meshdrop.reader"""
