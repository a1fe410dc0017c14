"""The email dispatcher: one personal email per job, through the campaign's
SMTP relay or the volunteer's own account. ``domain`` is pure (MIME and
headers, rendering, DSN reading), ``usecases`` deliver a job and record a
bounce, ``outbound`` is the one module that publishes, and the adapters
(``worker`` for NATS, ``api`` for ``/bounces``, ``smtp``/``own_smtp``,
``ledger``) are wired in ``app``."""
