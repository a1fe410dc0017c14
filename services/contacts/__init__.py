"""contacts: each volunteer's personal contact book, their inbox of
suggestions, and the one-click relay that turns a suggestion into jobs."""
