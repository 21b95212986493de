"""What sealing a completed ceremony costs per envelope, as ratios of a raw baseline (no absolute timings).

For a ``--pages``-page document and ``--signers`` signers with two fields each, it times, ``--rounds`` times:

- the baseline: pyHanko signing the untouched document once (a plain PAdES signature, as any signing service
  would do anyway);
- the ceremony's seal: stamping every field, adding the certificate page, and the certification signature
  (``vault.ceremony.seal``).

It reports the medians' ratio (seal / baseline) and the size ratio of the sealed PDF to the original. The
vault-in that follows is vault-in's own cost (``bench/vault_in.py``).

    python bench/ceremony_seal.py [--pages N] [--signers N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from compliance.signatures.document_identity import DocumentSigner, self_signed
from vault.ceremony.seal import SignerLine, seal, stamped

ROOT = Path(__file__).resolve().parents[1]


def _make_pdf() -> Callable[..., bytes]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    make_pdf: Callable[..., bytes] = importlib.import_module("tests.pdf_factory").make_pdf
    return make_pdf


def _median(work: Callable[[], bytes], rounds: int) -> tuple[float, bytes]:
    times, out = [], b""
    for _ in range(rounds):
        start = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--signers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    original = _make_pdf()(pages=args.pages)
    key = ec.generate_private_key(ec.SECP256R1())
    signer = DocumentSigner(key, self_signed(key, "bench document signing"))
    now = datetime.now(UTC)
    lines = [
        SignerLine(
            order=i + 1,
            name=f"Signer {i + 1}",
            adopted=f"Signer Number {i + 1}",
            consented_at=now,
            signed_at=now,
            commitment="sub_" + "x" * 20 + ":" + "0" * 64,
            fields=[
                {"type": "signature", "page": 1 + i % args.pages, "x": 72, "y": 100, "width": 200, "height": 40},
                {"type": "date", "page": 1 + i % args.pages, "x": 300, "y": 100, "width": 100, "height": 20},
            ],
        )
        for i in range(args.signers)
    ]
    baseline, _ = _median(lambda: seal(original, signer), args.rounds)
    ceremony, sealed = _median(
        lambda: seal(stamped(original, "env_bench", "Bench", "0" * 64, lines), signer), args.rounds
    )
    report = {
        "pages": args.pages,
        "signers": args.signers,
        "rounds": args.rounds,
        "seal_over_plain_signature": round(ceremony / baseline, 2),
        "sealed_size_over_original": round(len(sealed) / len(original), 2),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.pages} pages, {args.signers} signers: the ceremony's seal costs "
        f"{report['seal_over_plain_signature']}x a plain PAdES signature of the same document; "
        f"the sealed PDF is {report['sealed_size_over_original']}x the original's size"
    )


if __name__ == "__main__":
    main()
