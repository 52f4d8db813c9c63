"""What this process runs with, checked before any work: ``variables`` reads the ``RSREFSEG2_*`` settings (torch
threads, log level) and ``packages`` tells whether this Python has the packages the backend needs. Both import only
the standard library and ``backend.errors``, so that a broken environment can still be reported."""
