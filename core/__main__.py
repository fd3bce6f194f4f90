"""``python -m natsd``: run the broker."""

from .cli import main

raise SystemExit(main())
