"""One campaign message travels the whole path, every service a separate
process started exactly as `make run` starts it: staff publish, the matcher
suggests, a volunteer relays in one click, the email reaches a real SMTP
server, and staff see the aggregate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.journey import walk
from tests.support.servers import create_pg_database, drop_pg_database
from tools.stack import Ports, Stack, StackConfig


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request, tmp_path: Path, smtp_server):
    cfg = StackConfig(var=tmp_path / "var", ports=Ports.free(), start_sink=False,
                      smtp_host=smtp_server.host, log_format="json")
    cfg.ports.smtp = smtp_server.port
    databases = []
    if request.param == "postgresql":
        databases = [create_pg_database(), create_pg_database()]
        cfg.feed_db, cfg.contacts_db = (url for _, url in databases)
    try:
        with Stack(cfg) as running:
            yield running
    finally:
        for name, _ in databases:
            drop_pg_database(name)


def test_a_message_travels_from_staff_to_a_contacts_inbox_and_back_as_an_aggregate(stack, smtp_server):
    walk(stack, smtp_server)
