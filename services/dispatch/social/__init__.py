"""The social dispatchers (Mastodon, Bluesky, X): one post per job on the
volunteer's own account. ``domain`` decides (pure), the adapters speak
HTTP, ``worker`` connects them to NATS."""
