"""The gateway's one error tree. The web layer renders each error from its `status` and `code`;
nobody parses messages. Messages never carry identifiers, measured values or key material.

Every `GatewayError` subclass is drawn here with its status and code. One that a single package
raises may stay beside the code that raises it, drawn with its module (under `gateway.`) in
brackets. tests/test_errors.py compares this drawing with the classes, both ways.

    GatewayError                   500  internal-error
    ├── BadRequest                 400  invalid-body (and subclasses' own codes)
    │   ├── InvalidJSON            400  invalid-json
    │   ├── UndecodableBody        400  undecodable-body (corrupt content coding, body cut short)
    │   ├── ControlCharacter       400  control-character (in a path, query or form field)
    │   ├── TooManyReadings        400  too-many-readings [adapters.base]
    │   ├── SubjectRequired        400  subject-required [adapters.healthkit.adapter]
    │   ├── InvalidSearch          400  invalid-search [fhir.search]
    │   │   ├── InvalidCursor      400  invalid-cursor [fhir.search]
    │   │   └── UnsupportedSearchParameter 400  unsupported-search-parameter [fhir.search]
    │   └── InvalidExportRequest   400  invalid-export-request [fhir.bulk_parameters]
    ├── Unauthenticated            401  unauthenticated
    ├── Forbidden                  403  forbidden
    │   └── ExportRefused          403  export-refused [services.exports.kickoff]
    │       ├── StudyExpired       403  study-expired [services.exports.kickoff]
    │       ├── MeasureNotInStudy  403  measure-not-in-study [services.exports.kickoff]
    │       ├── TransferMechanismMissing 403  transfer-mechanism-missing [services.exports.kickoff]
    │       ├── TransferMechanismExpired 403  transfer-mechanism-expired [services.exports.kickoff]
    │       ├── NoResearchConsent  403  no-research-consent [services.exports.kickoff]
    │       └── NoCrossBorderConsent 403  no-cross-border-consent [services.exports.kickoff]
    ├── NotFound                   404  not-found
    ├── NotAcceptable              406  not-acceptable (FHIR: Accept / _format not served)
    ├── RequestTimeout             408  request-timeout (the body did not arrive in time)
    ├── Conflict                   409  conflict
    │   └── AlreadyEnrolled        409  already-enrolled
    ├── PayloadTooLarge            413  payload-too-large
    ├── UnsupportedMediaType       415  unsupported-media-type
    │   └── UnsupportedContentEncoding 415  unsupported-content-encoding (with Accept-Encoding)
    ├── ZoneNotServed              421  zone-not-served
    ├── RateLimited                429  rate-limited (with Retry-After)
    ├── ZoneUnavailable            503  zone-unavailable (with Retry-After)
    │   ├── DatabaseUnavailable    503  zone-unavailable (storage: the database stopped answering)
    │   └── Overloaded             503  overloaded (the zone's group-commit queue is full)
    ├── TableBusy                  503  table-busy (operator commands only: a lock not had in time)
    ├── StaleKeyRing               503  key-ring-stale (key file behind the zone's published ring)
    ├── ConfigurationError         500  configuration (start-up only)
    │   └── SchemaVersionMismatch  500  schema-version
    │       └── AppliedMigrationChanged 500  migration-changed (an applied file edited or missing)
    ├── IdentityUnreadable         500  identity-unreadable [privacy.envelope]
    │   └── KekVersionMissing      500  identity-unreadable [privacy.envelope]
    ├── ExportFailed               500  export-failed [services.exports.kickoff]
    └── TokenRequestError          400  invalid_request [services.smart] (RFC 6749 §5.2)
        ├── InvalidClient          401  invalid_client [services.smart]
        ├── InvalidScope           400  invalid_scope [services.smart]
        └── UnsupportedGrantType   400  unsupported_grant_type [services.smart]
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    status = 400
    code = "invalid-body"


class InvalidJSON(BadRequest):
    code = "invalid-json"


class UndecodableBody(BadRequest):
    """The body's bytes could not be read as sent: data that is not valid under its declared
    Content-Encoding, or a body that ended before its Content-Length or chunked framing said.
    400, not 415: the coding is one we accept, its content is malformed (RFC 9110 §15.5.1)."""

    code = "undecodable-body"


class ControlCharacter(BadRequest):
    """A path segment, query value or form field with a control character that no FHIR string
    may hold (gateway.lexical.is_fhir_string), e.g. NUL."""

    code = "control-character"


class Unauthenticated(GatewayError):
    status = 401
    code = "unauthenticated"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not-found"


class NotAcceptable(GatewayError):
    """No representation the client accepts (RFC 9110 §15.5.7; FHIR http.html#mime-type)."""

    status = 406
    code = "not-acceptable"


class RequestTimeout(GatewayError):
    """The request body did not arrive within the server's deadline (RFC 9110 §15.5.9)."""

    status = 408
    code = "request-timeout"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class AlreadyEnrolled(Conflict):
    code = "already-enrolled"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload-too-large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported-media-type"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A Content-Encoding the gateway does not decode (RFC 9110 §8.4, §15.5.16: 415, with
    Accept-Encoding naming the codings it does accept, §12.5.3)."""

    code = "unsupported-content-encoding"

    def __init__(self, message: str, *, accepted: str) -> None:
        super().__init__(message)
        self.accepted = accepted


class ZoneNotServed(GatewayError):
    """The request names a zone this process does not serve (RFC 9110 §15.5.20 Misdirected)."""

    status = 421
    code = "zone-not-served"


class RateLimited(GatewayError):
    """The credential used more than its share of requests (RFC 6585 §4)."""

    status = 429
    code = "rate-limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # whole seconds until a request would be admitted


class ZoneUnavailable(GatewayError):
    status = 503
    code = "zone-unavailable"


class DatabaseUnavailable(ZoneUnavailable):
    """The zone's database stopped answering (connection lost or refused, server shutting down,
    an operation past its deadline). gateway.storage raises it in place of the driver's error,
    which stays its `__cause__`; nothing outside storage inspects driver exceptions."""


class Overloaded(ZoneUnavailable):
    """The zone's group-commit queue is full (gateway/storage/writer.py): refused at once
    rather than letting memory grow."""

    code = "overloaded"

    def __init__(self, message: str, zone: str) -> None:
        super().__init__(message)
        self.zone = zone  # for the backpressure metric; zone names are not personal data


class TableBusy(GatewayError):
    """An operator command could not lock a table within its timeout; nothing was changed."""

    status = 503
    code = "table-busy"

    def __init__(self, table: str) -> None:
        super().__init__(f"the {table} table is busy; nothing was changed, try again")


class StaleKeyRing(GatewayError):
    """The zone's database refused a data key wrapped under a kek version older than the one the
    zone has published (migration 0010): this process's key ring is behind the key file the
    `keys` CLI rotated. The gateway reloads its ring and retries once before answering this."""

    status = 503
    code = "key-ring-stale"


class ConfigurationError(GatewayError):
    code = "configuration"


class SchemaVersionMismatch(ConfigurationError):
    code = "schema-version"


class AppliedMigrationChanged(SchemaVersionMismatch):
    """A migration recorded as applied whose file this gateway ships with other bytes, or not
    at all: the database was not built by the SQL this code was written against."""

    code = "migration-changed"
