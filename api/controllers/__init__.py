"""One Litestar Controller per resource; handlers delegate in a few statements."""
