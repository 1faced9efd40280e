"""``python -m persistdict``: the command line."""

from persistdict.cli import main

raise SystemExit(main())
