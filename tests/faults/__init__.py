"""Fault tests: the real processes and database under outages, crashes and overload."""
