"""Cachet's shared, I/O-free core: both the edge and the coordinator import it.

Modules are named for the spec they implement: ``canonical_json`` (RFC 8785), ``keys`` (RFC 8032,
C2SP signed-note key ids), ``signed_note`` (C2SP signed-note), ``checkpoint`` (C2SP
tlog-checkpoint), ``merkle`` (RFC 9162 §2.1), ``content_id``, ``records`` (the Record contract),
``batches`` (the Batch contract), ``manifests``, ``receipts``, and ``errors`` (the error tree).
No module awaits, opens files or sockets, reads the clock or draws randomness; see
docs/design/provenance.md.
"""
