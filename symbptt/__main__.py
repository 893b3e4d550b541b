"""``python -m symbptt``: the same as the ``symbptt`` command."""

from .cli import main

raise SystemExit(main())
