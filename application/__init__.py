"""Command side of aimm: one eventsourcing Application per bounded context."""
