"""Adapters that connect Ember's call hooks to observability systems (optional extras)."""
