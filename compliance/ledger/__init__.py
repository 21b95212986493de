"""The transparency log's own parts: entries and chains, Merkle trees and tiles, checkpoints' text form, signed
notes, the vault's Ed25519 key and the one error every log check raises (``log_error``)."""
