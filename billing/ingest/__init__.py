"""Verified ingest: pure decisions (``decide``) and the async pipeline (``pipeline``)."""
