"""The Processing provider ``rsrefseg2`` and its algorithms, one per file."""
