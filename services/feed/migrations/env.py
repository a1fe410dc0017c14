"""Alembic environment for feed (see shared.migrations.run_env). Feed's
revisions are tracked in their own table, so it can share a database."""

from services.feed.store import VERSION_TABLE, FeedTable
from shared.migrations import run_env

target_metadata = FeedTable.metadata
run_env(target_metadata, VERSION_TABLE)
