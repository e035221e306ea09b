"""Persistence behind one interface (``base.Store``); one module per backend (``sqlite`` now,
PostgreSQL later). Schema versions live in ``migrations``."""
