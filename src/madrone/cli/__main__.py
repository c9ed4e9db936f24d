"""``python -m madrone.cli``: the same command line as ``madrone``."""

from madrone.cli.main import main

main()
