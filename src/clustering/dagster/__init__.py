"""dagster layer."""
