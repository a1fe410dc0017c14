"""Contacts' HTTP routes, one module per area. Every volunteer route is
scoped to the caller: another volunteer's data is a 404, as if it did not
exist; staff tokens open nothing here."""
