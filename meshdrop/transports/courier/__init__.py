"""meshdrop.transports.courier: removable media. Export bundles into a courier folder on a
stick, import from one, and watch for sticks. A stick is an untrusted source like any
peer: everything on it goes through the store's one ingest path."""
