"""``python -m natsd``: run the broker."""

from natsd.cli import main

raise SystemExit(main())
