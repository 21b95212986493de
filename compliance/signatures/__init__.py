"""PDF signatures: validating those inside a document (``pdf_validation``) and the vault's own
document-signing identity (``document_identity``)."""
