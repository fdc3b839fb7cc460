"""Storage: one store interface over chdb and ClickHouse server, migrations, the batching writer."""
