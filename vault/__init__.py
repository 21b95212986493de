"""The records: custody, transfers, the ceremony, webhooks; ``vault.api`` and ``vault.cli`` are the outer ring."""

import compliance  # noqa: F401  # its warning filters, before any module of ours imports pyHanko
