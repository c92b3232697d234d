"""What a built mix says about itself and how it is checked: statistics, the report and dataset card,
quality checks, and `imp-data validate` (records, shards, whole mixes)."""
