"""C2SP tlog-witness: cosignatures (``cosignature``), the witness itself (``cosigner``) and its HTTP app
(``http_app``), and the client that asks a witness to cosign (``client``)."""
