"""Settings come from MAILLAGE_* variables and .env, never from code."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.dispatch.email.settings import EmailDispatchSettings
from services.feed.settings import FeedSettings
from shared.settings import CommonSettings


def test_env_prefix_and_dotenv(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MAILLAGE_NATS_URL=nats://from-dotenv:4222\nMAILLAGE_FEED_STAFF_TOKEN=t0\n")
    monkeypatch.setenv("MAILLAGE_FEED_HTTP_PORT", "9999")
    monkeypatch.setenv("MAILLAGE_ENVIRONMENT", "production")
    settings = FeedSettings()
    assert settings.http_port == 9999
    assert settings.staff_token.get_secret_value() == "t0"
    assert settings.common.nats_url == "nats://from-dotenv:4222"
    assert settings.common.resolved_log_format == "json"
    assert "t0" not in repr(settings)  # secrets never print


def test_a_missing_required_setting_is_named(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILLAGE_DISPATCH_EMAIL_FROM_ADDRESS", raising=False)
    with pytest.raises(ValidationError) as err:
        EmailDispatchSettings()
    assert "from_address" in str(err.value)


def test_dev_logs_are_readable_by_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILLAGE_ENVIRONMENT", raising=False)
    monkeypatch.delenv("MAILLAGE_LOG_FORMAT", raising=False)
    assert CommonSettings().resolved_log_format == "console"


@pytest.mark.parametrize(("variable", "model", "field"), [
    ("MAILLAGE_CONTACTS_CAMPAIGN_NAME", "contacts", "campaign_name"),
    ("MAILLAGE_DISPATCH_EMAIL_LIST_ID", "dispatch", "list_id"),
])
def test_a_setting_that_reaches_a_mail_header_refuses_a_line_break(monkeypatch, tmp_path, variable, model, field):
    # the campaign's name is the From: of sign-in mail and part of every
    # invitation's subject; the List-Id heads every email
    from services.contacts.settings import ContactsSettings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "Campagne\r\nBcc: everyone@example.org")
    cls = ContactsSettings if model == "contacts" else EmailDispatchSettings
    with pytest.raises(ValidationError) as err:
        cls()
    problems = {e["loc"][0]: e["msg"] for e in err.value.errors()}
    assert "control character" in problems[field]
