"""Pure domain model of aimm: aggregates, their events and domain errors (no I/O)."""
