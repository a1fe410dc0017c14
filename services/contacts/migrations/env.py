"""Alembic environment for contacts (see shared.migrations.run_env)."""

from services.contacts.store import ContactsTable
from shared.migrations import run_env

target_metadata = ContactsTable.metadata
run_env(target_metadata)
