"""Feed's schema is made by Alembic migrations, on SQLite and PostgreSQL;
the migrations match the models exactly, come back down, live beside
another service's in one database, and adopt a database feed made before
it had migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session

from services.contacts import store as contacts_store
from services.feed.store import MIGRATIONS, VERSION_TABLE, FeedTable, Message, create_schema
from shared.db import make_engine
from shared.migrations import downgrade, upgrade


def schema_diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True, "version_table": VERSION_TABLE,
            "include_name": lambda name, type_, *_: type_ != "table" or name in FeedTable.metadata.tables,
        })
        return compare_metadata(ctx, FeedTable.metadata)


def test_migrations_build_the_models_schema_and_come_back_down(db_url):
    engine = make_engine(db_url)
    create_schema(engine)
    create_schema(engine)  # a second start finds nothing to do
    assert schema_diff(engine) == [], "models and migrations differ"
    tables = set(inspect(engine).get_table_names())
    assert set(FeedTable.metadata.tables) <= tables and VERSION_TABLE in tables

    downgrade(engine, MIGRATIONS, "base")
    assert set(inspect(engine).get_table_names()) <= {VERSION_TABLE}
    create_schema(engine)
    assert schema_diff(engine) == []
    engine.dispose()


def test_feed_and_contacts_share_a_database_without_stepping_on_each_other(db_url):
    engine = make_engine(db_url)
    contacts_store.create_schema(engine)
    create_schema(engine)
    assert schema_diff(engine) == []
    downgrade(engine, MIGRATIONS, "base")  # feed leaves; contacts' tables stay
    left = set(inspect(engine).get_table_names())
    assert set(contacts_store.ContactsTable.metadata.tables) <= left
    assert not set(FeedTable.metadata.tables) & left
    engine.dispose()


def test_a_database_from_before_migrations_is_adopted(db_url):
    """Feed's first schema was made by create_all: no version table. The
    baseline is recognized, stamped, and upgraded; a message published then
    is a published message now."""
    engine = make_engine(db_url)
    upgrade(engine, MIGRATIONS, "0001")
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(text(
            "INSERT INTO message (id, title, body, interests, variants, created_at, published_at) VALUES "
            "('old', 'Ancien', 'Texte', '[\"education\"]', '{\"email\": {\"subject\": \"S\", \"body\": \"B\"}}', "
            "'2026-10-01 10:00:00', '2026-10-01 10:00:05')"))
        conn.execute(text(
            "INSERT INTO message (id, title, body, interests, variants, created_at) VALUES "
            "('unsent', 'Jamais', 'Texte', '[]', '{\"email\": {\"subject\": \"S\", \"body\": \"B\"}}', "
            "'2026-10-02 10:00:00')"))
    create_schema(engine)
    assert schema_diff(engine) == []
    with Session(engine) as s:
        old, unsent = s.get(Message, "old"), s.get(Message, "unsent")
        assert (old.state, old.regions, old.locales, old.priority) == ("published", [], [], 1)
        assert old.updated_at == old.created_at
        assert unsent.state == "draft"
    engine.dispose()


def test_relay_counts_move_to_one_row_per_channel_and_back(db_url):
    engine = make_engine(db_url)
    upgrade(engine, MIGRATIONS, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO relayfact (relay_id, message_id, volunteer_id, emails_queued, "
                          "mastodon_queued, bluesky_queued) VALUES ('r1', 'm1', 'v1', 2, 0, 1)"))
    upgrade(engine, MIGRATIONS, "head")
    assert schema_diff(engine) == []
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT channel, queued FROM relayqueued ORDER BY channel")).all()
    assert [tuple(r) for r in rows] == [("bluesky", 1), ("email", 2)]
    downgrade(engine, MIGRATIONS, "0003")
    with engine.begin() as conn:
        back = conn.execute(text("SELECT emails_queued, mastodon_queued, bluesky_queued FROM relayfact")).one()
    assert tuple(back) == (2, 0, 1)
    engine.dispose()
