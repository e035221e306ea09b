"""The coordinator's aiohttp application: handlers only; the work happens in ``billing.service``."""
