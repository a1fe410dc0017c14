"""Feed's use cases, one module each: what staff (and the scheduler) can do.
Each takes the engine (and the bus when it publishes), opens and commits
its own transaction, raises the errors of services/feed/errors.py, and
publishes through services/feed/publishing.py. The API, the console and
the scheduler call these, never each other."""
