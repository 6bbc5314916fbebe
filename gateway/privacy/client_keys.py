"""A SMART Backend Services client's own side: its signing key pair and the client assertions
it signs with the private half (`wearable-gateway clients keygen` and `token`).

    private key    PKCS#8 PEM, written once with mode 0600; never sent anywhere
    public JWKS    {"keys": [{kty, kid, alg, use: "sig", ...}]}: what `clients add --jwks` takes
    kid            the RFC 7638 JWK thumbprint of the public key, so the private key alone is
                   enough to name its key in an assertion header (no kid to keep beside it)

The verifying side, and the rules an assertion must meet, are in `tokens.py`. Specs: SMART App
Launch 2.x "Client Authentication: Asymmetric"
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html), RFC 7523 §3,
RFC 7638.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.privacy._primitives import b64url

ClientAlgorithm = Literal["ES384", "RS384"]
ALGORITHMS: Final[tuple[ClientAlgorithm, ...]] = ("ES384", "RS384")
# RS384 keys: 3072 bits, NIST SP 800-57's size for security beyond 2030 (the gateway takes 2048+).
_RSA_BITS: Final = 3072
# SMART: exp "no more than five minutes in the future"; well inside it, for clock skew.
ASSERTION_LIFETIME: Final = timedelta(minutes=4)
# RFC 7638 §3.2: the thumbprint covers the required members only, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class ClientKeyError(Exception):
    """A private key file that cannot be used; the message never carries key material."""


@dataclass(frozen=True, slots=True)
class ClientKeyFiles:
    private_key: Path
    jwks: Path
    kid: str


def _public_jwk(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> dict[str, Any]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))
    return dict(RSAAlgorithm.to_jwk(public, as_dict=True))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: base64url(SHA-256(JSON of the required members, sorted, no whitespace))."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(orjson.dumps(members, option=orjson.OPT_SORT_KEYS)).digest()
    return b64url(digest)


def _algorithm_of(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> ClientAlgorithm:
    return "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"


def public_jwks(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = _public_jwk(key.public_key())
    jwk |= {"kid": thumbprint(jwk), "alg": _algorithm_of(key), "use": "sig"}
    return {"keys": [jwk]}


def generate_client_key(prefix: Path, algorithm: ClientAlgorithm = "ES384") -> ClientKeyFiles:
    """Write `<prefix>.pem` (private, 0600) and `<prefix>.jwks.json` (public). Neither file may
    exist yet: overwriting a private key would orphan the client registered with it."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    private_path = prefix.with_name(prefix.name + ".pem")
    jwks_path = prefix.with_name(prefix.name + ".jwks.json")
    for path in (private_path, jwks_path):
        if path.exists() or path.is_symlink():
            raise ClientKeyError(f"{path} already exists; not overwriting it")
    jwks = public_jwks(key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(private_path, pem, mode=0o600)
    _write_new(jwks_path, orjson.dumps(jwks, option=orjson.OPT_INDENT_2) + b"\n", mode=0o644)
    return ClientKeyFiles(private_key=private_path, jwks=jwks_path, kid=jwks["keys"][0]["kid"])


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    """Create `path` with `mode` from the start (O_EXCL: never an existing file or a symlink)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ClientKeyError(f"{path} already exists; not overwriting it") from exc
    except OSError as exc:
        raise ClientKeyError(f"cannot create {path} ({exc.strerror})") from exc
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; the JWKS is meant to be shared
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_client_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientKeyError(f"cannot read the private key {path} ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The parser's own message is not repeated: it may quote the file's contents.
        raise ClientKeyError(f"{path} is not an unencrypted PEM private key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return key
    if (
        isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048
    ):  # the gateway's minimum (tokens.py)
        return key
    raise ClientKeyError(f"{path} is neither an EC P-384 nor an RSA (2048+ bits) private key")


def sign_client_assertion(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    client_id: str,
    token_url: str,
    now: datetime,
) -> str:
    """The JWT a client sends as `client_assertion` (RFC 7523 §3; SMART asymmetric auth):
    iss = sub = client id, aud = the token endpoint, a random jti, exp within five minutes."""
    issued = int(now.timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + int(ASSERTION_LIFETIME.total_seconds()),
        "jti": secrets.token_urlsafe(24),
    }
    kid = public_jwks(key)["keys"][0]["kid"]
    return jwt.encode(claims, key, algorithm=_algorithm_of(key), headers={"kid": kid, "typ": "JWT"})
