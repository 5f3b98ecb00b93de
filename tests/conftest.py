"""Shared fixtures: the bundled iSales simulator and a real PostgreSQL (see each plugin)."""

pytest_plugins = ["tests.fixtures_sim", "tests.fixtures_db"]
