"""The matcher's use cases, one module each. Each reads and changes the
state in ``store`` through the domain's rules, counts what it did, and
publishes through ``outbound`` only; handlers call them, never each other.

- ``index_profile``, ``apply_taxonomy``, ``restore_watermark``: what the
  replayed streams bring (then live);
- ``match_message``: a published message, matched and paced; suggestions out;
- ``withdraw_message``: a withdrawn message leaves every queue;
- ``rebuild``: the queues replayed from FEED at start, what a crash left
  half-done published again;
- ``release_pass``: the periodic pass, releasing what waited.
"""
