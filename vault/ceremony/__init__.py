"""The e-sign ceremony: a roster of recipients signs a staged document in order, and the sealed result is vaulted.

Small modules, one step each: :mod:`.roster` (who signs what, where), :mod:`.document` (the PDF to sign),
:mod:`.tokens` (signing links), :mod:`.sending` (send and remind), :mod:`.signing` (what a link may do),
:mod:`.seal` (the sealed PDF), :mod:`.completion` (seal, then vault in; and its reconciler), :mod:`.mail`
(the emails, sent after commit). See docs/ceremony.md.
"""
