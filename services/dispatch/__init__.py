"""dispatch: one sender process per channel (``python -m services.dispatch email``)."""
