"""Alembic environment for feed: migrates the engine the service (or a
test) hands over, or the URL from MAILLAGE_FEED_DATABASE_URL. Feed's
revisions are tracked in their own table, so it can share a database."""

from alembic import context

from services.feed.store import VERSION_TABLE, FeedTable

target_metadata = FeedTable.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from shared.db import make_engine

        engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.connect() as conn:
            _run(conn)
        return
    _run(connection)


def _include(name, type_, *_args) -> bool:
    # Only feed's own tables: another service may live in the same database.
    return type_ != "table" or name in target_metadata.tables


def _run(connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode rebuilds tables.
    context.configure(connection=connection, target_metadata=target_metadata,
                      version_table=VERSION_TABLE, include_name=_include,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
