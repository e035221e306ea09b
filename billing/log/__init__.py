"""The coordinator's global Merkle log: pure integration (``integrate``), the sequencer task
(``sequencer``) that appends leaves in order and signs checkpoints, and proof assembly."""
