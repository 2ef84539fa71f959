"""Store clustering per product category: internal, external, demand and rebalanced clusters."""

__version__ = "0.1.0"
