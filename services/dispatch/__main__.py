"""python -m services.dispatch CHANNEL — run the sender for one channel."""

from __future__ import annotations

import argparse

from shared.service import serve

CHANNELS = ("email", "mastodon", "bluesky", "x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.dispatch",
        description="Run one channel's dispatcher. Each channel is its own process, "
        "scaled on its own; replicas of a channel share one JetStream consumer.",
        epilog="Settings come from MAILLAGE_DISPATCH_<CHANNEL>_* variables or .env, e.g. "
        "MAILLAGE_DISPATCH_EMAIL_SMTP_HOST, MAILLAGE_DISPATCH_EMAIL_FROM_ADDRESS, "
        "MAILLAGE_DISPATCH_MASTODON_TRANSIT_KEY (each channel its own key).",
    )
    parser.add_argument("channel", choices=CHANNELS, help="which channel to send on")
    channel = parser.parse_args(argv).channel
    if channel == "email":  # each process imports only its own channel's code
        from services.dispatch.email.app import create_email_app
        from services.dispatch.email.settings import EmailDispatchSettings

        email_settings = EmailDispatchSettings()
        serve(create_email_app(email_settings), email_settings)
    else:
        from services.dispatch.social.app import create_social_app
        from services.dispatch.social.wiring import NETWORKS

        settings = NETWORKS[channel].settings()
        serve(create_social_app(channel, settings), settings)


if __name__ == "__main__":
    main()
