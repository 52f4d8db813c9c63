"""Background work: one QgsTask per query."""
