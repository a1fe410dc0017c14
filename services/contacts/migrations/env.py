"""Alembic environment for contacts: migrates the engine the service (or a
test) hands over, or the URL from MAILLAGE_CONTACTS_DATABASE_URL."""

from alembic import context

from services.contacts.store import ContactsTable

target_metadata = ContactsTable.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from shared.db import make_engine

        engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.connect() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode rebuilds tables.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
