"""Webhooks: events leave the vault through a transactional outbox, signed as the Standard Webhooks spec says.

``events`` maps ledger events to webhook events, ``outbox`` writes a delivery in the event's own transaction,
``sender`` delivers (one sender across processes, under a lease), ``signing`` and ``targets`` keep it honest.
"""
