"""Versioned SQL migrations, applied idempotently and recorded in `schema_migrations`.

Migration files are `NNNN_name.sql` in sinks/migrations/, applied in version order; each holds one
or more statements ended by `;` at a line end. An applied migration must not change afterwards:
its checksum is recorded, and a mismatch stops `cxpulse migrate` instead of silently diverging.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from importlib import resources

from cxpulse.schemas.times import ch_time
from cxpulse.sinks.store import Store

# ReplacingMergeTree: two migrate runs racing on a server may both record a version; it counts once.
MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        parts = re.split(r";[ \t]*(?:\n|$)", self.sql)
        return [part.strip() for part in parts if _has_code(part)]


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("cxpulse.sinks").joinpath("migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


def applied_migrations(store: Store) -> dict[int, str]:
    store.execute(MIGRATIONS_DDL)
    rows = store.query("SELECT version, checksum FROM schema_migrations FINAL")
    return {int(row["version"]): row["checksum"] for row in rows}


def migrate(store: Store) -> list[Migration]:
    """Apply every migration not yet applied; returns those applied now."""
    done = applied_migrations(store)
    applied = []
    for migration in load_migrations():
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was "
                    "applied; add a new migration instead of editing an applied one"
                )
            continue
        for statement in migration.statements():
            store.execute(statement)
        store.insert(
            "schema_migrations",
            [
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "applied_at": ch_time(time.time_ns() // 1_000_000),
                }
            ],
        )
        applied.append(migration)
    return applied
