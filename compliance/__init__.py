"""The evidence: what the vault can prove, and how anyone checks it. Imports ``storage`` only, never ``vault``.

Layers, top to bottom (import-linter contracts in pyproject.toml): ``verifier`` and ``attach``; ``certificates``;
``audit``; ``conditions`` and ``bundles``; ``sources``; ``checkpoints``; ``witness``, ``headmap`` and
``signatures``; ``ledger``; and the shared vocabulary: ``errors``, ``error_codes``, ``finding_codes``.
"""
