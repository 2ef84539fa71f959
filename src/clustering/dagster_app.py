"""``python -m clustering.dagster_app --env dev``: the Dagster UI and daemon (dagster/app.py)."""

from clustering.dagster.app import main

if __name__ == "__main__":
    raise SystemExit(main())
