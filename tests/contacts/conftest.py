"""The contacts app as the campaign runs it (its name and public URL in the
emails), for the modules here that do not build their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.contacts_api import contacts_client


@pytest.fixture
def contacts(nats_url: str, db_url: str) -> Iterator[TestClient]:
    with contacts_client(nats_url, db_url) as client:
        yield client
