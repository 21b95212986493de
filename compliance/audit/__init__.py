"""The audit trail of one envelope, as JSON with each entry's bytes and as CSV."""
