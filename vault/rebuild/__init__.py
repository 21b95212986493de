"""Rebuilding the database from the WORM bucket: the logs checked against their signed checkpoints, replayed."""
