"""The social dispatchers (Mastodon, Bluesky, X): one post per job on the
volunteer's own account. ``domain`` decides (pure), ``usecases.post_job``
runs one job and reports through ``outbound``; the adapters are the
networks' (``mastodon``, ``bluesky``, ``x``: HTTP) and ``worker`` (NATS);
``wiring`` says which settings, adapter and subjects make each network,
``app`` puts one together."""
