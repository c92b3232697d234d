"""Source adapters: one module per published dataset, behind a registry (`imp_data.sources.registry`)."""
