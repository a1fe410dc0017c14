"""The email's pure rules: writing the message and its headers
(``message``), rendering the personal part (``render``), reading delivery
status notifications (``dsn``). No I/O, no clock."""
