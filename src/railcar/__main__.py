"""``python -m railcar`` is the ``railcar`` command."""

from railcar.cli import main

main()
