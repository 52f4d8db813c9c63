"""File-system primitives every layer of the backend may use.

- ``scratch``: scratch files for atomic writes, created with the umask's permissions (not mkstemp's 0600).
- ``stale``: names that carry their owner's host and PID, and the sweep of those whose owner has died.
- ``lock``: a folder's exclusive lock (flock on a lock file), released by the kernel when its holder dies.
- ``bounded_json``: JSON from files we did not write (sidecars, headers, records), parsed within bounds.

Imports nothing from the backend: it is the bottom layer, beside ``backend.errors`` and ``backend.protocol``.
"""
