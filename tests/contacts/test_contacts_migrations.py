"""Contacts' schema is made by Alembic migrations, on SQLite and PostgreSQL,
and the migrations match the models exactly."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlmodel import Session, select

from services.contacts.store import MIGRATIONS, ContactsTable, InvitationSent, Relay, Suppression, create_schema
from shared.db import make_engine
from shared.migrations import downgrade, upgrade


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


def test_0006_turns_past_refusals_and_invitations_into_campaign_wide_rules(db_url):
    """A refusal given, or an invitation sent, before 0006 holds for the
    address from then on; relays already made lose their per-address reasons."""
    engine = make_engine(db_url)
    upgrade(engine, MIGRATIONS, "0005")
    now = datetime.now(timezone.utc)
    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(t["volunteer"].insert(), [{"id": "v1", "display_name": "A", "email": "a@b.example",
                                                "created_at": now}])
        contacts = {"refused": "c-refused", "invited": "c-invited", "withdrawn-by-volunteer": "c-vol",
                    "unknown": "c-unknown"}
        conn.execute(t["contact"].insert(), [{"id": cid, "volunteer_id": "v1", "sealed": b"x", "created_at": now,
                                              "updated_at": now} for cid in contacts.values()])
        conn.execute(t["contactaddress"].insert(), [
            {"contact_id": cid, "kind": "email", "blind": f"blind-{name}", "volunteer_id": "v1"}
            for name, cid in contacts.items()])
        states = {"refused": ("withdrawn", "contact", now), "invited": ("invited", "invitation", now),
                  "withdrawn-by-volunteer": ("withdrawn", "volunteer", None), "unknown": ("unknown", "volunteer", None)}
        conn.execute(t["consentrecord"].insert(), [
            {"contact_id": contacts[name], "channel": "email", "volunteer_id": "v1", "state": state,
             "source": source, "updated_at": now, "invited_at": invited}
            for name, (state, source, invited) in states.items()])
        conn.execute(t["relay"].insert(), [
            {"id": "r1", "suggestion_id": "s1", "volunteer_id": "v1", "message_id": "m1", "emails_queued": 1,
             "automatic": False, "created_at": now,
             "skipped": {"suppressed": 1, "already_received": 2, "over_cap": 3, "no_address": 1}},
            {"id": "r2", "suggestion_id": "s2", "volunteer_id": "v1", "message_id": "m2", "emails_queued": 1,
             "automatic": False, "created_at": now, "skipped": {}}])
    create_schema(engine)
    with Session(engine) as session:
        # the refused contact's "no" was an invitation's answer: it was invited too
        assert {r.blind: r.reason for r in session.exec(select(Suppression))} == {"blind-refused": "refused"}
        assert {r.blind for r in session.exec(select(InvitationSent))} == {"blind-invited", "blind-refused"}
        assert {r.id: r.skipped for r in session.exec(select(Relay))} == {
            "r1": {"unreachable": 6, "no_address": 1}, "r2": {}}
    engine.dispose()
