"""python -m effray …  (same as the `effray` command)."""

from effray.cli import main

main()
