"""SMART Backend Services credentials: the clients' public keys, the signed client assertions
they authenticate with, and the opaque access tokens the gateway issues in return.

    client_id      wgc_<zone>_<32 hex>           public; the zone tells which database knows it
    assertion      a JWS (RFC 7515) JWT (RFC 7519) signed with the client's RS384/ES384 key
    access token   wgt_<zone>_<43 base64url>     shown once; only SHA-256 of it is stored

Signatures are checked by PyJWT with a key object whose algorithm is fixed by the key's type,
never by the token's header, so `alg: none`, HS256 keyed with a public key and RS/ES mix-ups all
fail before any signature check (RFC 8725 §2.1, §3.1). The claims are checked here, against a
`now` the caller passes, so that every rule below cites its spec and tests can move the clock.

Specs: SMART App Launch 2.x "Client Authentication: Asymmetric"
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html), RFC 7523 §3,
RFC 7521 §4.2.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.privacy.keys import ZONE_PATTERN

# SMART: servers SHALL support RS384 and ES384 (client-confidential-asymmetric §"Signature").
ASSERTION_ALGORITHMS: Final = ("RS384", "ES384")
# SMART: "exp ... no more than five minutes in the future".
MAX_ASSERTION_LIFETIME: Final = timedelta(seconds=300)
# Allowance for a client clock running ahead of ours, for iat and nbf only (RFC 7519 §4.1.5).
CLOCK_SKEW: Final = timedelta(seconds=60)

_MAX_ASSERTION_CHARS: Final = 16 * 1024
_MAX_KEYS: Final = 10
_MAX_KID_CHARS: Final = 128
_MAX_JTI_CHARS: Final = 255
# NIST SP 800-57 Part 1 Rev. 5 table 2: RSA below 2048 bits is no longer acceptable.
_MIN_RSA_BITS: Final = 2048
# RFC 7517 §9.2, RFC 7518 §6.2.2 / §6.3.2 / §6.4.1: members only a private or symmetric key has.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# The public members kept of each registered key; anything else is dropped before storing.
_PUBLIC_MEMBERS: Final = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}

_CLIENT_ID: Final = re.compile(rf"wgc_(?P<zone>{ZONE_PATTERN.pattern})_[0-9a-f]{{32}}")
# token_urlsafe(32) is always 43 characters (RFC 4648 §5 alphabet, no padding).
_ACCESS_TOKEN: Final = re.compile(rf"wgt_(?P<zone>{ZONE_PATTERN.pattern})_[A-Za-z0-9_-]{{43}}")

# Only the two algorithms exist for this verifier; a token naming any other never reaches one.
_JWS: Final = jwt.PyJWS(
    algorithms=list(ASSERTION_ALGORITHMS), options={"enforce_minimum_key_length": True}
)


class AssertionRejected(Exception):
    """The client assertion does not authenticate its client. The message says why, in words
    that quote nothing of the assertion; callers answer RFC 6749 `invalid_client`."""


class InvalidClientKeys(ValueError):
    """A JWKS offered for registration that the gateway will not accept."""


# --------------------------------------------------------------------------- client keys


@dataclass(frozen=True, slots=True)
class ClientKeySet:
    """A client's registered public keys by `kid`, each bound to the one algorithm its type
    allows (RSA: RS384, EC P-384: ES384)."""

    keys: Mapping[str, jwt.PyJWK] = field(repr=False)
    public_jwks: Mapping[str, Any] = field(repr=False)  # what is stored: public members only

    def __repr__(self) -> str:
        return f"ClientKeySet(kids={sorted(self.keys)!r})"


def _algorithm_for(jwk: Mapping[str, Any], index: int) -> str:
    kty = jwk.get("kty")
    if kty == "RSA":
        algorithm = "RS384"
    elif kty == "EC" and jwk.get("crv") == "P-384":
        algorithm = "ES384"
    else:
        raise InvalidClientKeys(f"keys[{index}] must be an RSA or an EC P-384 public key")
    if jwk.get("alg", algorithm) != algorithm:
        raise InvalidClientKeys(f"keys[{index}]: a {kty} key signs with {algorithm} here")
    if jwk.get("use", "sig") != "sig":
        raise InvalidClientKeys(f"keys[{index}] must be a signing key (use: sig)")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise InvalidClientKeys(f"keys[{index}]: key_ops must include verify")
    return algorithm


def load_client_jwks(document: Any) -> ClientKeySet:
    """Check a JWKS (RFC 7517 §5) of signing keys and bind each key to its algorithm.

    Refused: private or symmetric keys (a client's private key must never be sent to us), keys
    without a unique `kid` (the assertion header names the key by it), RSA keys under 2048 bits,
    EC curves other than P-384, and `alg`/`use` members that contradict the key."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise InvalidClientKeys('a JWKS is a JSON object {"keys": [...]}')
    raw_keys: list[Any] = document["keys"]
    if not 1 <= len(raw_keys) <= _MAX_KEYS:
        raise InvalidClientKeys(f"a client registers 1 to {_MAX_KEYS} keys")
    keys: dict[str, jwt.PyJWK] = {}
    stored: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_keys):
        if not isinstance(raw, Mapping):
            raise InvalidClientKeys(f"keys[{index}] must be a JSON object")
        if _PRIVATE_MEMBERS & set(raw):
            raise InvalidClientKeys(
                f"keys[{index}] holds private key material: register the public key only"
            )
        kid = raw.get("kid")
        if not isinstance(kid, str) or not 1 <= len(kid) <= _MAX_KID_CHARS:
            raise InvalidClientKeys(f"keys[{index}] needs a kid of 1-{_MAX_KID_CHARS} characters")
        if kid in keys:
            raise InvalidClientKeys(f"keys[{index}]: kid is not unique")
        algorithm = _algorithm_for(raw, index)
        public = {"kty": raw["kty"], "kid": kid, "alg": algorithm, "use": "sig"}
        for member in _PUBLIC_MEMBERS[raw["kty"]]:
            public[member] = raw.get(member)
        try:
            key = jwt.PyJWK(dict(public), algorithm)
        except jwt.PyJWTError as exc:
            raise InvalidClientKeys(f"keys[{index}] is not a valid {raw['kty']} key") from exc
        if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < _MIN_RSA_BITS:
            raise InvalidClientKeys(f"keys[{index}]: RSA keys need at least {_MIN_RSA_BITS} bits")
        keys[kid] = key
        stored.append(public)
    return ClientKeySet(keys=keys, public_jwks={"keys": stored})


# ---------------------------------------------------------------------- client assertions


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client_id: str
    jti: str  # remembered until `expires_at` so the assertion cannot be used twice
    expires_at: datetime


def _segments(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified."""
    if len(assertion) > _MAX_ASSERTION_CHARS or assertion.count(".") != 2:
        raise AssertionRejected("client_assertion is not a compact JWS (RFC 7515 §7.1)")
    try:
        decoded = _JWS.decode_complete(assertion, options={"verify_signature": False})
        claims = orjson.loads(decoded["payload"])
    except (jwt.PyJWTError, orjson.JSONDecodeError) as exc:
        raise AssertionRejected("client_assertion is not a well-formed JWT") from exc
    if not isinstance(claims, dict):
        raise AssertionRejected("the client_assertion payload is not a JSON object")
    return decoded["header"], claims


def assertion_issuer(assertion: str) -> str:
    """The client the assertion claims to come from (`iss`), unverified: it only picks the
    keys that `verify_client_assertion` then checks the signature with."""
    _, claims = _segments(assertion)
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or parse_client_id(issuer) is None:
        raise AssertionRejected("iss must be the client_id this gateway issued")
    return issuer


def _numeric_date(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    # RFC 7519 §2 NumericDate: a JSON number of seconds since the epoch (bool is not one).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AssertionRejected(f"{name} must be a NumericDate (RFC 7519 §2)")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AssertionRejected(f"{name} is out of range") from exc


def _signing_key(header: Mapping[str, Any], keys: ClientKeySet) -> tuple[jwt.PyJWK, str]:
    # RFC 8725 §3.1: only the algorithms we allow; SMART: "typ" fixed to "JWT", and "kid" names
    # one of the client's registered keys, whose type fixes the algorithm.
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise AssertionRejected("alg must be RS384 or ES384")
    if header.get("typ", "JWT") != "JWT":
        raise AssertionRejected("typ must be JWT")
    kid = header.get("kid")
    key = keys.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise AssertionRejected("kid names no key registered for this client")
    if key.algorithm_name != algorithm:
        raise AssertionRejected(f"the key named by kid signs with {key.algorithm_name}")
    return key, algorithm


def _check_claims(
    claims: Mapping[str, Any], *, client_id: str, audience: str, now: datetime
) -> VerifiedAssertion:
    # RFC 7523 §3 items 1-7, with SMART's tighter bound on exp.
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRejected("iss and sub must both be the client_id")
    audiences = claims.get("aud")
    if isinstance(audiences, str):
        audiences = [audiences]
    if not isinstance(audiences, list) or audience not in audiences:
        raise AssertionRejected("aud must be this gateway's token endpoint URL")
    expires_at = _numeric_date(claims, "exp")
    if expires_at is None:
        raise AssertionRejected("exp is required")
    if expires_at <= now:
        raise AssertionRejected("the client assertion has expired")
    if expires_at > now + MAX_ASSERTION_LIFETIME:
        raise AssertionRejected("exp must be at most 300 seconds in the future")
    issued_at = _numeric_date(claims, "iat")
    if issued_at is not None and issued_at > now + CLOCK_SKEW:
        raise AssertionRejected("iat is in the future")
    not_before = _numeric_date(claims, "nbf")
    if not_before is not None and not_before > now + CLOCK_SKEW:
        raise AssertionRejected("the client assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= _MAX_JTI_CHARS:
        raise AssertionRejected(f"jti must be a string of 1-{_MAX_JTI_CHARS} characters")
    return VerifiedAssertion(client_id=client_id, jti=jti, expires_at=expires_at)


def verify_client_assertion(
    assertion: str, keys: ClientKeySet, *, client_id: str, audience: str, now: datetime
) -> VerifiedAssertion:
    """Authenticate `client_id` by its assertion, or raise `AssertionRejected`."""
    header, claims = _segments(assertion)
    key, algorithm = _signing_key(header, keys)
    try:
        _JWS.decode_complete(assertion, key=key, algorithms=[algorithm])
    except jwt.InvalidSignatureError as exc:
        raise AssertionRejected("the signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise AssertionRejected("the signature cannot be checked with the registered key") from exc
    return _check_claims(claims, client_id=client_id, audience=audience, now=now)


# ---------------------------------------------------------------- client ids, access tokens


def new_client_id(zone: str) -> str:
    if not ZONE_PATTERN.fullmatch(zone):
        raise ValueError("zone names are 1-16 lowercase letters and digits, starting with a letter")
    return f"wgc_{zone}_{secrets.token_hex(16)}"


def parse_client_id(client_id: str) -> str | None:
    """The zone of a well-formed client id, else None."""
    match = _CLIENT_ID.fullmatch(client_id)
    return match["zone"] if match else None


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str = field(repr=False)  # handed to the client once, never stored
    token_hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ParsedAccessToken:
    zone: str
    token_hash: bytes = field(repr=False)


def issue_access_token(zone: str) -> IssuedAccessToken:
    if not ZONE_PATTERN.fullmatch(zone):
        raise ValueError("zone names are 1-16 lowercase letters and digits, starting with a letter")
    token = f"wgt_{zone}_{secrets.token_urlsafe(32)}"
    return IssuedAccessToken(token=token, token_hash=_hash(token))


def parse_access_token(token: str) -> ParsedAccessToken | None:
    """The zone and stored-form hash of a well-formed access token, else None."""
    match = _ACCESS_TOKEN.fullmatch(token) if len(token) <= 128 else None
    if match is None:
        return None
    return ParsedAccessToken(zone=match["zone"], token_hash=_hash(token))


def _hash(token: str) -> bytes:
    # 256 random bits need no slow KDF; the table is looked up by this hash (its primary key),
    # which reveals nothing an attacker could use to guess a token.
    return hashlib.sha256(token.encode("ascii")).digest()
