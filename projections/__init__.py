"""Read side of aimm: the asyncpg projector, read models and their query functions."""
