"""python -m effray …  (same as the `effray` command).

Ray Jobs start effray this way in the cluster's Python, so the dependencies are checked
first (effray/preflight.py): a Python without them gets one line saying how to install
them, not a traceback.
"""

from effray.preflight import check

check()

from effray.cli import main  # noqa: E402  (after the check: it imports the dependencies)

main()
