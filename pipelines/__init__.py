"""Dagster wiring for imp-data: assets, checks, jobs and resources. No logic lives here — every asset
calls the same `imp_data` function the CLI calls."""
