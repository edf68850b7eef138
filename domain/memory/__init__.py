"""Agent memory: memories with sealed text, their strength, graph entities and lifecycle."""
