"""The evidence: what the vault can prove, and how anyone checks it. Imports ``storage`` only, never ``vault``.

Layers, top to bottom (import-linter contracts in pyproject.toml): ``verifier`` and ``attach``; ``certificates``;
``audit``; ``conditions`` and ``bundles``; ``sources``; ``checkpoints``; ``witness``, ``headmap`` and
``signatures``; ``ledger``; and the shared vocabulary: ``errors``, ``error_codes``, ``finding_codes``.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# pyHanko (0.38) imports cryptography's DSA key type at import time, which cryptography 51 deprecates with a warning
# on every start of every process, and an error under the test suite's strict warnings. It is about pyHanko's
# import, not about a key the vault uses, so it is silenced for pyHanko's modules and nothing else.
warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning, r"pyhanko\.")
