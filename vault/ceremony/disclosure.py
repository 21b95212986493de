"""The consumer disclosures of E-SIGN (15 U.S.C. 7001(c)(1)(B)) shown before consent; its hash goes in the log.

The text is versioned by its SHA-256: ``recipient.consented`` names the exact disclosure consented to.
"""

from __future__ import annotations

import hashlib

DISCLOSURE = (
    "Consent to electronic records and signatures. "
    "(1) You may ask to receive this document on paper instead, or sign it on paper, by contacting the sender; "
    "a paper copy is free of charge. "
    "(2) You may withdraw this consent at any time before you sign, by declining to sign; withdrawing has no "
    "other consequence than that the document is not signed electronically. "
    "(3) Your consent applies only to this document (this envelope) and the records of its signing. "
    "(4) To withdraw your consent, or to update your email address, contact the sender of this document. "
    "(5) To access and keep these records you need a device with a current web browser and software that "
    "opens PDF files, and a way to save or print them. "
    "By consenting you confirm that you can open the PDF document offered to you here, which shows that you can "
    "access the records in the form in which they are provided."
)
DISCLOSURE_SHA256 = hashlib.sha256(DISCLOSURE.encode()).hexdigest()
