"""Receipt lookup for the UI: build the receipt of a request id and verify it server-side with
``provenance.receipts.verify_receipt`` (the log's key, the expected origin, and every key the
edge ever had: a batch signed before a rotation stays valid)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.errors import reason_of
from billing.service import Coordinator
from provenance.errors import CachetError
from provenance.keys import KeyRing, parse_verifier_key
from provenance.receipts import Receipt, format_receipt, verify_receipt
from provenance.records import is_request_id, record_to_obj


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """What the receipt page shows: verified or failed (with the reason), and the details."""

    request_id: str
    verified: bool
    reason: str  # "" when verified
    detail: str
    receipt: Receipt | None
    checkpoint_size: int | None

    @property
    def record(self) -> dict[str, object]:
        return {} if self.receipt is None else record_to_obj(self.receipt.record)

    @property
    def receipt_json(self) -> bytes:
        return b"" if self.receipt is None else format_receipt(self.receipt)


async def check_receipt(coordinator: Coordinator, request_id: str) -> ReceiptCheck:
    """Look up and verify; a missing, pending or invalid receipt is a failed check, not an
    exception."""
    if not is_request_id(request_id):
        return ReceiptCheck(request_id, False, "bad-request", "not a request id", None, None)
    try:
        receipt = await coordinator.receipt(request_id)
    except CachetError as exc:
        return ReceiptCheck(request_id, False, reason_of(exc), str(exc), None, None)
    edge_keys = await coordinator.store.edge_keys(receipt.header.edge)
    ring = KeyRing(parse_verifier_key(k.verifier) for k in edge_keys)
    try:
        checkpoint = verify_receipt(
            receipt, coordinator.log_verifier, ring, coordinator.config.log_origin
        )
    except CachetError as exc:
        return ReceiptCheck(request_id, False, reason_of(exc), str(exc), receipt, None)
    return ReceiptCheck(request_id, True, "", "", receipt, checkpoint.size)
