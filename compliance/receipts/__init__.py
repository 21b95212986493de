"""Signed receipts (``evault-receipt/v1``): the vault's word that named events happened, checkable offline."""
