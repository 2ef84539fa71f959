"""Pure domain logic: contracts, preprocessing, features, clustering, profiles and merging.

Nothing in ``core`` imports Dagster or knows the project's folder layout; every function takes
its data and typed parameters explicitly.
"""
