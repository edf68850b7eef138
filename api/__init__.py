"""HTTP and command-line front of aimm: Litestar app, controllers, schemas, auth, CLI."""
