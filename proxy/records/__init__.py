"""The edge's durable record pipeline: spool (segments of frames), sealer, forwarder, receipts.

See docs/design/spool.md for the formats and the durability argument.
"""
