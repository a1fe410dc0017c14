"""Maillage's shared package: the one place where subjects, streams, event
models, settings and observability are declared for every service."""
