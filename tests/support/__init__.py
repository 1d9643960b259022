"""Shared test helpers (fixtures that start real processes)."""
