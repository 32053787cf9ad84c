"""``python -m algotrade``: the same as the ``algotrade`` command."""

from algotrade.apps.cli import main

main()
