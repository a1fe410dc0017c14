"""Contacts' schema is made by Alembic migrations, on SQLite and PostgreSQL,
and the migrations match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.contacts.store import MIGRATIONS, ContactsTable, create_schema
from shared.db import make_engine
from shared.migrations import downgrade


def test_migrations_build_the_models_schema_and_come_back_down(db_url):
    engine = make_engine(db_url)
    create_schema(engine)
    create_schema(engine)  # a second start finds nothing to do
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                ContactsTable.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert set(ContactsTable.metadata.tables) <= tables and "alembic_version" in tables

    downgrade(engine, MIGRATIONS, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    create_schema(engine)
    assert set(ContactsTable.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
