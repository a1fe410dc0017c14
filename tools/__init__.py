"""Developer tools: the local SMTP sink, the `make run` launcher, demo data."""
