"""tracefix: run the tests an edit affects, show failures where they happen, offer verified fixes."""

__version__ = "0.1.0"
