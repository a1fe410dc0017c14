"""Contacts' use cases, one module each: what a volunteer, the campaign's
provisioning, a contact answering a link, and the bus deliveries can do.
Each opens and commits its own transaction (``_unit``), raises the errors
of services/contacts/errors.py, and publishes through
services/contacts/outbound.py. The API, the volunteer's pages and the NATS
handlers call these, never each other; book.py, relay/ (emails, posts) and
networks.py take an open session and leave the commit to the use case."""
