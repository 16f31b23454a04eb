"""Dashboards, rollups and the growth model (docs/analytics.md)."""
