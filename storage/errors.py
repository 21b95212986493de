"""Storage failures in the vault's own terms, so callers never need to know botocore's error codes."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every object-store failure; the HTTP layer maps these, storage never knows about HTTP."""


class ObjectConflict(StorageError):
    """The key already holds different bytes: write-once forbids replacing them."""


class ChecksumMismatch(StorageError):
    """Bytes are not the intended ones: the server refused our digest, or what we read hashes differently."""


class BucketNotWorm(StorageError):
    """The bucket cannot guarantee write-once custody; the message names what is missing."""


class StorageUnavailable(StorageError):
    """The store could not be reached or failed on its side (connection error, 5xx); retrying may help."""


class ObjectMissing(StorageError):
    """The key or version does not exist."""
