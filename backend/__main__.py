"""``python -m backend COMMAND …``; see ``backend.cli``."""

from backend.cli import main

raise SystemExit(main())
