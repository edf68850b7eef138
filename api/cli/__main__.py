"""``python -m api.cli``: the same command line as ``aimm``."""

from api.cli import main

main()
