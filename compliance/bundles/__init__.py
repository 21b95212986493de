"""Proof bundles: one envelope's history with its proofs, checkable offline with the vault's public key."""
