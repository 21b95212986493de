"""§9-105 certificates: issued and signed (``issuance``), checked offline (``offline_check``), and
printed as a PAdES-signed page (``pdf_page``)."""
