"""The end-to-end journey of test_end_to_end.py (tests/support/journey.py), with the NATS server running
the deployment's generated users and every service connecting as its own:
least privilege leaves the real path whole, and the server never had to
refuse one of its calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalogue import SERVICES
from tests.support.journey import walk
from tests.support.nats_auth import secured_config, server_env
from tools.stack import Ports, Stack, StackConfig, nats_server_binary
from tools.streams import STREAMS_USER


@pytest.fixture
def secured_stack(tmp_path: Path, smtp_server):
    cfg = StackConfig(var=tmp_path / "var", ports=Ports.free(), start_sink=False,
                      smtp_host=smtp_server.host, log_format="json")
    cfg.ports.smtp = smtp_server.port
    stack = Stack(cfg)
    conf, passwords = secured_config(tmp_path / "nats", cfg.ports.nats)
    for proc in stack.procs:
        if proc.name == "nats":
            proc.argv = [nats_server_binary(), "-c", str(conf)]
            proc.env |= server_env(passwords)
        elif proc.name in passwords:  # the user defaults to the service's (or the streams step's) name
            proc.env["MAILLAGE_NATS_PASSWORD"] = passwords[proc.name]
    assert {p.name for p in stack.procs} >= {*SERVICES, STREAMS_USER}, "every service runs, after the streams step"
    with stack:
        yield stack


def test_the_journey_works_with_every_service_as_its_own_nats_user(secured_stack, smtp_server):
    walk(secured_stack, smtp_server)
    nats_log = (secured_stack.cfg.var / "log" / "nats.log").read_text()
    assert "Violation" not in nats_log, [line for line in nats_log.splitlines() if "Violation" in line]
    assert "Authorization Error" not in nats_log
