"""Every stable error code, its HTTP status and what it means: the one list clients and docs/error-codes.md rely on.

``tests/test_error_codes.py`` greps the source tree for code literals and fails when one is missing here or
listed here but raised nowhere, and checks that docs/error-codes.md's table is :func:`markdown_table` exactly.
Status ``None``: not an HTTP answer, but an operator command's error, a finding of ``evault verify`` or of the
offline verifiers.
Print the table with ``python -m compliance.error_codes``; rewrite the page with ``python scripts/gen_docs.py``.
"""

from __future__ import annotations

from typing import NamedTuple

from compliance.finding_codes import CODES as FINDING_CODES


class ErrorCode(NamedTuple):
    status: int | None
    meaning: str


CODES: dict[str, ErrorCode] = {
    # requests
    "Request.Invalid": ErrorCode(
        400, "the body, a query or a path parameter is malformed; details.errors names the field"
    ),
    "Request.InvalidCursor": ErrorCode(400, "the list cursor is not one this API issued"),
    "Request.InvalidHeader": ErrorCode(
        400, "If-Match or If-None-Match is present but empty, too long or not visible ASCII"
    ),
    "Request.InvalidMetadata": ErrorCode(
        400, "metadata/parties are not JSON the ledger can hold (size, depth, numbers)"
    ),
    "Request.FieldTooLong": ErrorCode(400, "a field is longer than its limit (details.field, details.limit)"),
    "Request.TooMany": ErrorCode(400, "a list has more items than its limit (details.field, details.limit)"),
    "Request.TooDeep": ErrorCode(400, "JSON nests deeper than the limit (details.field, details.limit)"),
    "Request.NumberOutOfRange": ErrorCode(400, "a number is not finite or beyond +-2**53 (details.field)"),
    "Request.InvalidCharacter": ErrorCode(
        400,
        "a string or filename holds a control, bidi-formatting, U+2028/2029 or lone surrogate character "
        "(details.field, details.character)",
    ),
    "Request.InvalidField": ErrorCode(400, "a field has the wrong type (details.field)"),
    "Request.UnsupportedMediaType": ErrorCode(400, "send application/pdf or multipart/form-data"),
    "Request.Error": ErrorCode(400, "another client error reported by the HTTP layer"),
    "Request.InvalidFormat": ErrorCode(400, "format is not one this endpoint serves (json, csv or pdf)"),
    "Request.TooLarge": ErrorCode(
        413, "the body is larger than the route takes: EVAULT_MAX_UPLOAD_BYTES or EVAULT_MAX_JSON_BYTES (details)"
    ),
    "Request.RateLimited": ErrorCode(
        429,
        "the key's quota for this window is spent (details.policy: default for EVAULT_RATE_LIMIT, copies for "
        "EVAULT_RATE_LIMIT_COPIES); see Retry-After",
    ),
    "Request.OrgRateLimited": ErrorCode(
        429,
        "the organisation's quota for this window, all its keys together, is spent (EVAULT_RATE_LIMIT_ORG): "
        "another key of it will not help; see Retry-After",
    ),
    "Request.TooManyUploads": ErrorCode(
        429,
        "the key has EVAULT_MAX_UPLOADS_PER_KEY uploads in flight, or its organisation its share "
        "(EVAULT_MAX_UPLOADS_PER_ORG alone, less beside others; details.setting); see Retry-After",
    ),
    "Request.Malformed": ErrorCode(
        400, "the request is not valid HTTP/1.1 (request line, headers or body framing); the connection is closed"
    ),
    "Request.HeaderTimeout": ErrorCode(
        408, "the request's headers took longer than EVAULT_HEADER_TIMEOUT_SECONDS; the connection is closed"
    ),
    "Request.BodyTimeout": ErrorCode(
        408,
        "the body arrived slower than EVAULT_BODY_MIN_BYTES_PER_SECOND after EVAULT_BODY_GRACE_SECONDS; "
        "the connection is closed and nothing was kept",
    ),
    "Request.ServerBusy": ErrorCode(503, "the service has EVAULT_MAX_UPLOADS uploads in flight; see Retry-After"),
    "Route.NotFound": ErrorCode(404, "no such endpoint"),
    "Route.MethodNotAllowed": ErrorCode(405, "the endpoint exists but not for this method; see Allow"),
    "Idempotency.InvalidKey": ErrorCode(400, "Idempotency-Key is not 1-255 printable ASCII characters"),
    "Idempotency.KeyReused": ErrorCode(409, "this Idempotency-Key was used for a different request"),
    "Idempotency.InProgress": ErrorCode(409, "a request with this Idempotency-Key is still in flight"),
    # authentication
    "Auth.MissingKey": ErrorCode(401, "no X-API-Key header"),
    "Auth.MalformedKey": ErrorCode(401, "the key is not lk_ followed by 40+ URL-safe characters"),
    "Auth.UnknownKey": ErrorCode(401, "the key is not known"),
    "Auth.KeyRevoked": ErrorCode(401, "the key was revoked"),
    "Auth.KeyExpired": ErrorCode(401, "the key has expired"),
    "Auth.Unauthenticated": ErrorCode(401, "authentication failed in the HTTP layer"),
    "Auth.InsufficientScope": ErrorCode(403, "the key lacks the operation's scope (details.required_scope)"),
    "Auth.Forbidden": ErrorCode(403, "refused by the HTTP layer"),
    # envelopes
    "Envelope.NotFound": ErrorCode(404, "no such envelope in your organisation"),
    "Envelope.InvalidKind": ErrorCode(400, "kind is not esign or paper"),
    "Envelope.InvalidTitle": ErrorCode(400, "title is empty, too long or holds NUL"),
    "Envelope.InvalidExternalId": ErrorCode(400, "external_id is empty, too long or holds NUL"),
    "Envelope.InvalidParty": ErrorCode(400, "a party has no usable name"),
    "Envelope.InvalidExpiry": ErrorCode(400, "expires_at is not a future time with a UTC offset"),
    "Envelope.InvalidReason": ErrorCode(400, "a void needs a reason of 1-500 characters"),
    "Envelope.SecuredPartyRequired": ErrorCode(400, "vault-in needs the secured party named"),
    "Envelope.DuplicateExternalId": ErrorCode(409, "external_id is taken in your organisation (details.envelope_id)"),
    "Envelope.InvalidTransition": ErrorCode(409, "the lifecycle forbids this change from the current state (details)"),
    "Envelope.NotVaultable": ErrorCode(409, "a voided, declined or expired envelope cannot be vaulted"),
    "Envelope.PreconditionFailed": ErrorCode(412, "If-Match does not match the envelope's ETag; nothing changed"),
    # the e-sign ceremony (docs/ceremony.md)
    "Recipient.Invalid": ErrorCode(400, "a recipient or one of their fields is malformed (details.field names it)"),
    "Recipient.FieldOffPage": ErrorCode(400, "a field is not on a page of the document to sign (details.field)"),
    "Ceremony.DocumentSigned": ErrorCode(400, "the document to sign already carries signatures"),
    "Ceremony.NotEsign": ErrorCode(409, "send, remind and signing links are for e-sign envelopes"),
    "Ceremony.NoDocument": ErrorCode(409, "send needs the document to sign: upload it first"),
    "Ceremony.NoSigner": ErrorCode(409, "send needs at least one recipient with role signer"),
    "Ceremony.NotSent": ErrorCode(409, "signing links exist once the envelope is sent"),
    "Ceremony.DocumentMissing": ErrorCode(410, "the document to sign is no longer staged (a rebuild found none)"),
    "Ceremony.InProgress": ErrorCode(
        409, "vault-in-signed of an envelope out for signing: it is vaulted by itself when its ceremony ends"
    ),
    "Ceremony.RemindTooSoon": ErrorCode(429, "this envelope was reminded less than EVAULT_REMIND_INTERVAL_SECONDS ago"),
    "Signing.LinkNotFound": ErrorCode(404, "no such signing link (forged, mistyped or another vault's)"),
    "Signing.LinkUsed": ErrorCode(409, "the link's recipient already signed or declined"),
    "Signing.EnvelopeClosed": ErrorCode(410, "the envelope's ceremony ended: voided, declined, expired or completed"),
    "Signing.LinkExpired": ErrorCode(410, "the signing link expired (EVAULT_SIGNING_LINK_TTL_SECONDS or the deadline)"),
    "Signing.ConsentRequired": ErrorCode(409, "consent to electronic records first (POST <link>/consent)"),
    "Signing.NotASigner": ErrorCode(409, "a viewer's link cannot sign or decline"),
    "Signing.NotYourTurn": ErrorCode(409, "earlier signers in the signing order have not signed yet"),
    "Signing.InvalidSignature": ErrorCode(
        400, "the adopted signature is not {type: typed, name}, or {type: drawn, name, image} with a canvas's PNG"
    ),
    "Signing.PageNotFound": ErrorCode(404, "the document to sign has no such page (details.pages: how many it has)"),
    "Signing.AccessCodeMismatch": ErrorCode(
        400, "the code typed is not the one the signing page's access-check image shows"
    ),
    "Signing.DocumentUnavailable": ErrorCode(
        503, "the document to sign was not read intact from storage; see Retry-After"
    ),
    "Recipient.NotFound": ErrorCode(404, "no such recipient of this envelope (embed token)"),
    # documents
    "Document.Empty": ErrorCode(400, "zero bytes"),
    "Document.NotPdf": ErrorCode(400, "the bytes are not a PDF"),
    "Document.Encrypted": ErrorCode(400, "the PDF is encrypted"),
    "Document.Malformed": ErrorCode(400, "the PDF is truncated or broken"),
    "Document.HashMismatch": ErrorCode(400, "the SHA-256 sent does not match the bytes"),
    "Document.NotSigned": ErrorCode(400, "vault-in-signed takes signed PDFs only"),
    "Document.Missing": ErrorCode(400, "no PDF sent and none staged"),
    "Document.TooMany": ErrorCode(400, "more than 20 documents for one envelope"),
    "Document.NotFound": ErrorCode(404, "no such document in this envelope"),
    "Staging.Empty": ErrorCode(409, "vault what was staged, with nothing staged: upload first or send a PDF"),
    "Staging.Expired": ErrorCode(409, "staged uploads passed EVAULT_STAGING_TTL_SECONDS; upload again"),
    # custody
    "Vault.AlreadyVaulted": ErrorCode(409, "the envelope already has another authoritative copy"),
    "Vault.InProgress": ErrorCode(409, "another vault-in of this envelope is in flight"),
    "Vault.NotVaulted": ErrorCode(409, "the envelope has no authoritative copy yet"),
    "Vault.Released": ErrorCode(409, "the authoritative copy was released by vault-out"),
    "Vault.AlreadyReleased": ErrorCode(409, "vault-out already happened"),
    "Vault.SecuredPartyUnnamed": ErrorCode(409, "neither the envelope nor the vault-in metadata names a secured party"),
    "Vault.WrongFlow": ErrorCode(409, "vault-in-signed is for e-sign envelopes, upload for paper ones"),
    "VaultOut.InvalidReason": ErrorCode(400, "reason is not transfer, paper_out, payoff or other"),
    "VaultOut.TransfereeRequired": ErrorCode(400, "a transfer names transferee.vault_id"),
    "VaultOut.NoteRequired": ErrorCode(400, "reason other needs a note"),
    "Transfer.NotFound": ErrorCode(404, "no such transfer, or your organisation is not one of its parties"),
    "Transfer.InvalidType": ErrorCode(400, "type is not control, location or control_and_location"),
    "Transfer.InvalidReceiver": ErrorCode(
        400, "to_organisation is not an organisation of this vault, or already holds what would move"
    ),
    "Transfer.InvalidExpiry": ErrorCode(400, "expires_at is not a future RFC 3339 date-time with offset"),
    "Transfer.NotController": ErrorCode(
        403, "only the organisation in control may release or transfer the record (a custodian may not)"
    ),
    "Transfer.NotReceiver": ErrorCode(403, "only the receiving organisation may accept or reject the transfer"),
    "Transfer.NotInitiator": ErrorCode(403, "only the initiating organisation may cancel or confirm the transfer"),
    "Transfer.Pending": ErrorCode(
        409, "a transfer of the record is open: authoritative retrieval, vault-out and another transfer wait"
    ),
    "Transfer.NotPending": ErrorCode(409, "the transfer is no longer open for this step (details.status)"),
    "Transfer.NotAccepted": ErrorCode(409, "confirm: the receiver has not accepted the transfer yet"),
    "Retention.InvalidDate": ErrorCode(400, "retain_until is not an RFC 3339 date-time with offset, in the future"),
    "Retention.BelowDefault": ErrorCode(
        400, "a vault-in's metadata.retain_until is earlier than the default retention"
    ),
    "Retention.CannotShorten": ErrorCode(
        409, "COMPLIANCE-mode retention only lengthens: retain_until is not later than the current one"
    ),
    "Retention.Disposed": ErrorCode(409, "the authoritative copy was disposed of after its retention"),
    "LegalHold.ReasonRequired": ErrorCode(400, "a legal hold is set and cleared for a stated, non-blank reason"),
    "LegalHold.AlreadySet": ErrorCode(409, "the authoritative copy is already under legal hold"),
    "LegalHold.NotSet": ErrorCode(409, "the authoritative copy is not under legal hold"),
    "Log.OutOfRange": ErrorCode(400, "proof indices out of order (leaf_index < tree_size, first <= second)"),
    "Log.SizeNotReached": ErrorCode(409, "the log has not grown to the tree size asked for (details.log_size)"),
    "Retention.InvalidDefault": ErrorCode(
        None, "evault org set-retention: an organisation's retention is 1 to 36600 days"
    ),
    # the parties behind the record (docs/parties.md)
    "Mers.InvalidOrgId": ErrorCode(400, "a MERS Org ID (of an organisation or a secured party) is not seven digits"),
    "Mers.OrgIdTaken": ErrorCode(None, "evault org set-mers-id: another organisation already has this MERS Org ID"),
    "Min.Invalid": ErrorCode(400, "a MIN is not exactly 18 digits"),
    "Min.BadCheckDigit": ErrorCode(400, "the MIN's last digit is not the Mod 10 Weight 2 check digit of the others"),
    "Min.OrgIdMismatch": ErrorCode(400, "the MIN does not start with your organisation's MERS Org ID"),
    "Min.NoOrgId": ErrorCode(409, "your organisation has no MERS Org ID yet; the operator sets it first"),
    "Min.AlreadyUsed": ErrorCode(409, "the MIN is registered in this vault already (a MIN is never reused)"),
    "SecuredParty.AmbiguousIdentity": ErrorCode(400, "secured_party names both an org_id and a mers_org_id"),
    "SecuredParty.UnknownOrganisation": ErrorCode(400, "secured_party.org_id names no organisation of this vault"),
    "Amendment.InvalidType": ErrorCode(400, "an amendment's type is not modification or assumption"),
    "Amendment.InProgress": ErrorCode(409, "another amendment of this envelope is writing its PDFs; retry"),
    "PaperIn.InvalidOriginal": ErrorCode(400, "original is not held or destroyed"),
    "PaperIn.InvalidTime": ErrorCode(400, "at is not an RFC 3339 time with its offset, or is in the future"),
    "PaperIn.AttesterRequired": ErrorCode(400, "attested_by is blank"),
    "PaperIn.NotPaper": ErrorCode(409, "a paper-in attestation is for paper envelopes only"),
    "Vault.IntegrityFailure": ErrorCode(500, "stored bytes do not match the record; reported, never served"),
    "Vault.CopyNotMarked": ErrorCode(500, "a copy came out identical to the original or failed its mark check"),
    "Server.InternalError": ErrorCode(500, "a bug; quote the request id"),
    "Event.Undeclared": ErrorCode(500, "a bug: the code logged an event type docs/events.md does not declare"),
    "Event.InvalidData": ErrorCode(500, "a bug: an event's data does not fit its declared schema (details.errors)"),
    "Storage.Unavailable": ErrorCode(503, "object storage failed; nothing was recorded as done"),
    "Storage.Corrupt": ErrorCode(500, "stored objects disagree with the vault's records (ours to fix; logged)"),
    "Log.Corrupt": ErrorCode(500, "the vault's own log store lacks or garbles a tile (ours to fix; logged)"),
    # documents: budgets and signatures
    "Document.TooComplex": ErrorCode(400, "the PDF exceeds a vetting budget (details name limit and setting)"),
    "Document.SignatureInvalid": ErrorCode(
        400, "an embedded signature does not verify, or a later change is one its signatures forbid"
    ),
    "Document.SignerUntrusted": ErrorCode(400, "a signer does not chain to EVAULT_SIGNER_TRUST_ROOTS (when required)"),
    # copies and capacity
    "Copy.StampFailed": ErrorCode(500, "the copy could not be stamped; logged with the request id"),
    "Copy.StampTimeout": ErrorCode(500, "stamping the copy passed its wall-clock deadline"),
    "Copy.TooComplex": ErrorCode(500, "stamping the copy passed its memory or CPU limit"),
    "Copy.Busy": ErrorCode(503, "stamping capacity is in use; see Retry-After"),
    "Vault.Busy": ErrorCode(503, "vetting capacity is in use; see Retry-After"),
    # webhooks
    "Webhook.InvalidUrl": ErrorCode(400, "the webhook url is not an absolute http(s) URL without credentials"),
    "Webhook.UnresolvableHost": ErrorCode(400, "the webhook url's host does not resolve"),
    "Webhook.UnsafeTarget": ErrorCode(
        400, "the webhook url's host resolves to a loopback, private, link-local or other non-public address"
    ),
    "Webhook.HttpsRequired": ErrorCode(400, "a webhook outside EVAULT_WEBHOOK_ALLOW_NETWORKS must use https"),
    "Webhook.InvalidSecret": ErrorCode(400, "a secret is whsec_ + base64 of 24-64 bytes (v1 only)"),
    "Webhook.InvalidScheme": ErrorCode(400, "scheme is v1 (HMAC-SHA256) or v1a (Ed25519)"),
    "Webhook.UrlRequired": ErrorCode(409, "no webhook is configured yet: the first configuration needs a url"),
    "Webhook.NotConfigured": ErrorCode(404, "no webhook is configured for your organisation"),
    "Webhook.Disabled": ErrorCode(409, "the webhook is disabled (a 410 Gone, or by you): enable it first"),
    "Webhook.SecretUnreadable": ErrorCode(
        503, "the webhook's stored key does not open with this vault's EVAULT_WEBHOOK_SECRETS_KEY"
    ),
    "Delivery.NotFound": ErrorCode(404, "no such webhook delivery in your organisation"),
    "Delivery.InFlight": ErrorCode(409, "an attempt of this delivery is in flight; retry when it ends"),
    "Evidence.Busy": ErrorCode(
        503,
        "EVAULT_EVIDENCE_PER_ORG (yours) or EVAULT_EVIDENCE_CONCURRENCY (all) evidence requests at work; see "
        "Retry-After",
    ),
    "Evidence.Timeout": ErrorCode(
        503, "the evidence passed EVAULT_EVIDENCE_DEADLINE_SECONDS; the work was stopped; see Retry-After"
    ),
    "Evidence.WorkerFailed": ErrorCode(
        503, "the process computing the evidence died or ran out of memory (ours, not the request's); see Retry-After"
    ),
    # service health
    "Database.Unavailable": ErrorCode(503, "the database cannot be reached or locked; see Retry-After"),
    "Service.NotReady": ErrorCode(503, "a readiness check fails (details.failing names it)"),
    "Checkpoint.WriteScopeRequired": ErrorCode(
        403, "events are pending and a checkpoint on request needs vault:write; see Retry-After for the scheduled one"
    ),
    "Checkpoint.RateLimited": ErrorCode(
        429, "the organisation's checkpoints on request are spent (EVAULT_RATE_LIMIT_CHECKPOINTS); see Retry-After"
    ),
    "Checkpoint.Busy": ErrorCode(
        503, "another process or replica is signing this log's checkpoint right now (its lease); see Retry-After"
    ),
    "Tile.NotFound": ErrorCode(404, "not a tlog-tiles path, or no checkpoint covers that tile yet"),
    "Log.MapNotCommitted": ErrorCode(409, "the checkpoint does not end with a head-map commit; retry"),
    # evault org / key commands (exit 1)
    "Organisation.InvalidName": ErrorCode(None, "an organisation name is empty or too long"),
    "Organisation.NotFound": ErrorCode(None, "no such organisation"),
    "Embed.InvalidOrigin": ErrorCode(
        None, "an embed origin is not scheme://host[:port] (http or https, no path, wildcard or credentials)"
    ),
    "Key.NotFound": ErrorCode(None, "no key matches the id or prefix"),
    "Key.Ambiguous": ErrorCode(None, "the prefix matches several keys (details list them)"),
    "Key.AlreadyRevoked": ErrorCode(None, "the key was revoked already"),
    "Key.AlreadyRotated": ErrorCode(None, "the key has a successor already"),
    "Key.Expired": ErrorCode(None, "an expired key cannot be rotated"),
    "Key.InvalidDuration": ErrorCode(None, "a duration is not like 30m, 24h or 7d"),
    "Key.InvalidName": ErrorCode(None, "a key name is empty or too long"),
    "Key.InvalidReference": ErrorCode(None, "not a key id, key prefix or key"),
    "Key.PrefixTooShort": ErrorCode(None, "a key prefix must be given whole (lk_ + 8 characters), or use the id"),
    "Key.InvalidScopes": ErrorCode(None, "scopes are empty or unknown"),
    # evault verify could not run (exit 3)
    "Attach.NoVault": ErrorCode(None, "no vault database here (missing, empty, or not an evault schema)"),
    "Attach.SchemaNotCurrent": ErrorCode(None, "the schema is not at the newest revision"),
    "Attach.StoreNotRunning": ErrorCode(None, "the embedded store is not running"),
    "Attach.StoreUnusable": ErrorCode(None, "the authoritative bucket cannot be checked"),
    "Attach.NoPublicKey": ErrorCode(None, "the vault's public key cannot be read"),
    "Subject.InvalidId": ErrorCode(None, "evault erase names something that is not a subject id (sub_...)"),
    "Subject.NotFound": ErrorCode(None, "evault erase names no data subject"),
    "Database.NotReady": ErrorCode(None, "an operator command finds no database, or one not migrated (exit 3)"),
    "Attach.NoReportKey": ErrorCode(None, "the report-signing key cannot be loaded"),
    "Verify.EmptyVault": ErrorCode(None, "nothing to verify: an empty vault is never clean (exit 3)"),
    "Rebuild.NotEmpty": ErrorCode(
        None, "evault rebuild: the database already holds a vault; rebuild into an empty one"
    ),
    "Rebuild.NoLog": ErrorCode(None, "evault rebuild: the bucket holds no log with a checkpoint the vault's keys sign"),
    "Rebuild.LogMismatch": ErrorCode(None, "evault rebuild: a tile or entry bundle does not hash to the signed root"),
    "Rebuild.UnknownEvent": ErrorCode(
        None, "evault rebuild: an entry's event type has no replay step; nothing written"
    ),
    "Rebuild.Inconsistent": ErrorCode(None, "evault rebuild: an entry contradicts the history before it"),
    "Restore.NotABackup": ErrorCode(None, "evault restore: the directory holds no evault backup"),
    "Restore.Diverged": ErrorCode(None, "evault restore: the backup's log is another history than the bucket's"),
    "Verify.RunFinished": ErrorCode(None, "--resume names a run that already finished"),
    "Verify.UnknownRun": ErrorCode(None, "--resume names no run"),
    "Verify.UnknownEnvelope": ErrorCode(None, "--envelope names no envelope"),
    "Verify.UnknownOrganisation": ErrorCode(None, "--org names no organisation"),
    "Report.Malformed": ErrorCode(None, "a verifier report does not parse"),
    "Report.BadSignature": ErrorCode(None, "a verifier report's signature does not verify"),
    "Report.NotEndorsed": ErrorCode(None, "the report key is not endorsed by the vault key you trust"),
    # findings of evault verify and of the offline verifiers
    "Object.BytesChanged": ErrorCode(None, "an authoritative object's bytes differ from the record"),
    "Object.ExtraVersion": ErrorCode(None, "an authoritative key has versions the record does not name"),
    "Object.Unreadable": ErrorCode(None, "an authoritative object cannot be read"),
    "Object.Unrecorded": ErrorCode(None, "an object under the authoritative prefix that no record names"),
    "Vault.ClaimUnfinished": ErrorCode(None, "a vault-in claim older than the grace period"),
    "Checkpoint.Mismatch": ErrorCode(None, "a checkpoint in the database differs from WORM"),
    "Chain.Broken": ErrorCode(None, "an envelope's hash chain does not link"),
    "Log.Malformed": ErrorCode(None, "a checkpoint, proof or bundle does not parse"),
    "Log.BadSignature": ErrorCode(None, "a checkpoint signature does not verify"),
    "Log.WrongOrigin": ErrorCode(None, "a checkpoint names another log"),
    "Log.WrongKey": ErrorCode(None, "a checkpoint is signed by another key"),
    "Log.InvalidProof": ErrorCode(None, "an inclusion proof does not verify"),
    "Log.Inconsistent": ErrorCode(None, "a newer checkpoint does not extend the older one"),
    "Log.RolledBack": ErrorCode(None, "a checkpoint is older than one already accepted"),
    "Log.EntriesMissing": ErrorCode(None, "log entries are missing"),
    "Log.EntryEdited": ErrorCode(None, "a log entry differs from its hash"),
    "Log.RootMismatch": ErrorCode(None, "the recomputed root differs from the checkpoint"),
    "Witness.Refused": ErrorCode(None, "a witness refused to cosign"),
    "Witness.Unavailable": ErrorCode(None, "a witness could not be reached"),
    "Timestamp.Invalid": ErrorCode(None, "a TSA token does not verify"),
    "Timestamp.Unavailable": ErrorCode(None, "the TSA could not be reached"),
    "Log.Forked": ErrorCode(None, "a checkpoint of the remembered size has another root"),
    "Log.ProveFromTrusted": ErrorCode(None, "prove consistency from the remembered checkpoint"),
    "Log.Incomplete": ErrorCode(None, "a bundle's last event is not the head the map commits to"),
    "Log.SegmentMissing": ErrorCode(
        None, "a bundle of a chain that crossed logs leaves out one of its logs or segments"
    ),
    "Log.HandOffBroken": ErrorCode(None, "a chain changes log other than by a hand-off of control and its arrival"),
    "Log.NotCovered": ErrorCode(409, "no signed checkpoint of a log covers the hand-off a bundle must prove yet"),
    "Log.CompletenessNotProven": ErrorCode(
        None, "a bundle proves a prefix of the history only (v1, no head map); log verify --allow-incomplete"
    ),
    "Certificate.Malformed": ErrorCode(None, "a certificate file does not parse as evault-certificate/v1"),
    "Certificate.BadSignature": ErrorCode(None, "a certificate's signature does not verify with the trusted key"),
    "Certificate.Inconsistent": ErrorCode(None, "a signed certificate whose claims its own proofs contradict"),
    "Witness.QuorumNotMet": ErrorCode(None, "fewer trusted witnesses cosigned the checkpoint than required"),
    "Map.RootMismatch": ErrorCode(None, "a committed head-map root differs from the one re-derived from the log"),
    "Log.KeyChainBroken": ErrorCode(
        None, "a key rotation or revocation statement does not follow from the key you trust (forged, forked, gap)"
    ),
    "Log.KeyCompromised": ErrorCode(
        None, "a checkpoint signed by a revoked key that no trusted witness or TSA dates before the compromise"
    ),
    "Certificate.KeyCompromised": ErrorCode(None, "a certificate signed by a key revoked as compromised: re-issue it"),
    "Receipt.Malformed": ErrorCode(None, "a receipt file does not parse as evault-receipt/v1"),
    "Receipt.BadSignature": ErrorCode(None, "a receipt's signature does not verify with the trusted key"),
    "Receipt.Inconsistent": ErrorCode(
        None, "a signed receipt whose fields or events its own proofs contradict, or that lacks what its kind needs"
    ),
    "Receipt.KeyCompromised": ErrorCode(None, "a receipt signed by a key revoked as compromised: ask for a new one"),
    "Receipt.ReleaseSuperseded": ErrorCode(
        None, "evault receipt verify --against: an event followed the release at the later checkpoint"
    ),
    "Receipt.BadCountersignature": ErrorCode(
        None, "a receipt's countersignature does not verify over its statement, or names no party of it"
    ),
    "Countersign.Invalid": ErrorCode(400, "a countersignature needs key_id and a base64 signature"),
    "Countersign.UnknownKey": ErrorCode(400, "the key_id is not a signing key registered for your organisation"),
    "Countersign.BadSignature": ErrorCode(400, "the signature does not verify over the transfer receipt's statement"),
    "Countersign.AlreadySigned": ErrorCode(409, "your organisation countersigned this transfer's receipt already"),
    "Org.InvalidSigningKey": ErrorCode(None, "evault org add-signing-key: the file is not an Ed25519 public key"),
    "Org.SigningKeyExists": ErrorCode(None, "evault org add-signing-key: that key is registered already"),
    "Receipt.NotReleased": ErrorCode(409, "a release receipt asked for before the envelope's vault-out"),
    "Receipt.NotCompleted": ErrorCode(409, "a transfer receipt asked for before the transfer completed"),
    "Evidence.NoDocumentSigner": ErrorCode(503, "the vault was started without a document-signing identity"),
    "Package.Malformed": ErrorCode(None, "an evidence package lacks a file it must hold, or a file does not parse"),
    "Package.BadSignature": ErrorCode(None, "an evidence package's manifest is not signed by the trusted key"),
    "Package.Altered": ErrorCode(None, "an evidence package's zip or a file in it differs from its signed manifest"),
    "Package.Inconsistent": ErrorCode(None, "an evidence package whose signed parts contradict each other"),
    "Export.NotReleased": ErrorCode(409, "an export package asked for before a vault-out of reason transfer"),
    "Export.NotTransfer": ErrorCode(409, "an export package asked for a record released for another reason"),
    "Export.NotReleaser": ErrorCode(409, "an export package asked for by an organisation other than the releasing one"),
    "Import.UntrustedKey": ErrorCode(None, "evault import: the package is not signed by a key trusted for its sender"),
    "Import.BadSignature": ErrorCode(
        None, "evault import: a signature in the package (manifest, certificate, checkpoint, receipt) does not verify"
    ),
    "Import.HashMismatch": ErrorCode(
        None, "evault import: a file differs from the signed manifest, or a PDF from the vaulted document's hash"
    ),
    "Import.ProofInvalid": ErrorCode(
        None, "evault import: an inclusion, head-map or completeness proof in the package does not hold"
    ),
    "Import.Malformed": ErrorCode(None, "evault import: the package lacks a part or a part does not parse"),
    "Import.Inconsistent": ErrorCode(None, "evault import: the package's signed parts contradict each other"),
    "Import.NotAddressed": ErrorCode(
        None, "evault import: the record was not released for a transfer to this vault (EVAULT_CUSTODIAN_ID)"
    ),
    "Import.ReleaseNotHead": ErrorCode(
        None, "evault import: an event followed the release in the sending vault's log: the package is stale"
    ),
    "Import.SealInvalid": ErrorCode(
        None, "evault import: a PDF's embedded signature does not verify here, or its signer is not trusted here"
    ),
    "Import.AlreadyImported": ErrorCode(None, "evault import: this release was imported into this vault already"),
    "Report.KeyCompromised": ErrorCode(None, "a report whose key a since-revoked vault key endorsed"),
    "SigningKey.NotCurrent": ErrorCode(
        None, "evault signing-key: the key at hand is not the current one, or revoking the current key unrotated"
    ),
    "SigningKey.Unknown": ErrorCode(None, "evault signing-key: no such key generation (or none recorded yet)"),
    "SigningKey.AlreadyRevoked": ErrorCode(None, "evault signing-key revoke: that generation is already revoked"),
    "SigningKey.CompromiseInFuture": ErrorCode(None, "evault signing-key revoke: --compromised-since is in the future"),
    "SigningKey.BadTime": ErrorCode(None, "evault signing-key revoke: --compromised-since is not ISO 8601"),
    "SigningKey.NoHsm": ErrorCode(None, "evault signing-key rotate --hsm without EVAULT_PKCS11_* settings"),
}

# Every finding of the verifier, from its own registry (one home for what each fault means).
CODES.update({c.code: ErrorCode(None, c.meaning) for c in FINDING_CODES.values() if c.code not in CODES})


def markdown_table() -> str:
    rows = ["| code | status | meaning |", "|---|---|---|"]
    for code, entry in sorted(CODES.items(), key=lambda item: (item[1].status or 999, item[0])):
        rows.append(f"| `{code}` | {entry.status or '—'} | {entry.meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
