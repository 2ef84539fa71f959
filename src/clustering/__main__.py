"""``python -m clustering`` entry point."""

from clustering.cli.main import main

raise SystemExit(main())
