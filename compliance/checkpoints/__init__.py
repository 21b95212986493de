"""Checkpoints of each organisation's log: signed and kept (``publisher``), timestamped (``timestamping``),
and trusted by an auditor (``auditor_memory``: consistency with the last one accepted; ``policy``: the witnesses
and TSA it demands)."""
