"""Evidence packages (``evault-evidence-package/v1``): everything about one envelope in one zip, checkable offline."""
