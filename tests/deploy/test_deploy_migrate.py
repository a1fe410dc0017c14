"""`python -m tools.migrate <service>`, the init container of feed and
contacts: the pods of a rollout start together, and all of them migrating
one shared PostgreSQL database at once must leave it at head, every one
exiting 0 (the advisory lock serialises them)."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import inspect, text

from shared.db import make_engine
from tests.support.paths import ROOT
from tools.stack import dev_keys


def test_concurrent_migrations_of_feed_and_contacts_on_one_database(pg_url, tmp_path):
    env = {**os.environ, **dev_keys(tmp_path), "MAILLAGE_FEED_STAFF_TOKEN": "t" * 20,
           "MAILLAGE_CONTACTS_PROVISIONING_TOKEN": "t" * 20,
           "MAILLAGE_FEED_DATABASE_URL": pg_url, "MAILLAGE_CONTACTS_DATABASE_URL": pg_url}
    procs = [subprocess.Popen([sys.executable, "-m", "tools.migrate", service], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for service in ("feed", "feed", "feed", "contacts", "contacts")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]

    engine = make_engine(pg_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"feed_alembic_version", "alembic_version", "message"} <= tables
        with engine.connect() as conn:  # one head each, written once
            assert conn.execute(text("SELECT count(*) FROM feed_alembic_version")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()
    again = subprocess.run([sys.executable, "-m", "tools.migrate", "feed"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
