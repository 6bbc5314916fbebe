"""`wearable-gateway clients add|revoke`: the operator registers a SMART Backend Services client
(its public JWKS, role and scopes) or revokes it with its access tokens (services/smart.py).

`wearable-gateway clients keygen` and `wearable-gateway token`: what a clinic's or a research
team's backend does to get a SMART Backend Services access token, as commands a person can run.

`token` is a client of the HTTP API, not of the databases: it discovers the token endpoint
(SMART App Launch 2.x §"Discovery", `/.well-known/smart-configuration`), signs a client
assertion with the private key and POSTs it (backend-services.html §"Request"), and prints the
access token alone on stdout so that `TOKEN=$(wearable-gateway token …)` works. Failures are one
line on stderr and a non-zero exit; neither the token nor the key ever appears in them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.cli.zones import open_zones, settings_of
from gateway.errors import GatewayError
from gateway.privacy.client_keys import (
    ALGORITHMS,
    ClientKeyError,
    generate_client_key,
    load_client_key,
    sign_client_assertion,
)
from gateway.services.smart import (
    CLIENT_CREDENTIALS,
    JWT_BEARER,
    ROLES,
    register_client,
    revoke_client,
)
from gateway.settings import load_settings

DEFAULT_SCOPE = "system/*.rs"
_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MAX_ERROR_CHARS = 200


def cmd_clients_add(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    try:
        jwks = json.loads(args.jwks.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read a JWKS (JSON) from {args.jwks}") from exc

    async def run() -> int:
        async with open_zones(settings) as zones:
            client_id = await register_client(
                zones,
                zone=args.zone,
                site=args.site,
                role=args.role,
                jwks=jwks,
                scopes=args.scopes.split(),
            )
        print(f"SMART backend client for {args.site} ({args.role}) in zone {args.zone}.")
        print("Its client_id (the iss and sub of its assertions; not a secret):")
        print(client_id)
        return 0

    return asyncio.run(run())


def cmd_clients_revoke(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def run() -> int:
        async with open_zones(settings) as zones:
            revoked = await revoke_client(zones, zone=args.zone, client_id=args.client_id)
        outcome = "revoked, with its access tokens" if revoked else "not found or already revoked"
        print(f"client {args.client_id}: {outcome}")
        return 0 if revoked else 1

    return asyncio.run(run())


def cmd_clients_keygen(args: argparse.Namespace) -> int:
    try:
        files = generate_client_key(args.out, args.alg)
    except ClientKeyError as error:
        raise GatewayError(str(error)) from error
    print(f"private key: {files.private_key} (mode 0600; keep it on the client, never send it)")
    print(f"public JWKS: {files.jwks} (register it with `clients add --jwks`; kid {files.kid})")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    try:
        key = load_client_key(args.key)
    except ClientKeyError as error:
        raise GatewayError(str(error)) from error
    base = args.url or load_settings(config_path=args.config, require_keys=False).base_url
    token = asyncio.run(_request_token(base.rstrip("/"), key, args.client_id, args.scope))
    sys.stdout.write(token + "\n")
    return 0


async def _request_token(base: str, key: Any, client_id: str, scope: str) -> str:
    discovery_url = f"{base}/.well-known/smart-configuration"
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as http:
            async with http.get(discovery_url) as response:
                if response.status != 200:
                    raise GatewayError(
                        f"{discovery_url} answered HTTP {response.status}: is {base} the gateway?"
                    )
                token_url = _string(await _json(response), "token_endpoint", discovery_url)
            assertion = sign_client_assertion(
                key, client_id=client_id, token_url=token_url, now=datetime.now(UTC)
            )
            form = {
                "grant_type": CLIENT_CREDENTIALS,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion,
                "scope": scope,
            }
            async with http.post(token_url, data=form) as response:
                answer = await _json(response)
                if response.status != 200:
                    raise GatewayError(_refusal(response.status, answer))
                return _string(answer, "access_token", token_url)
    except aiohttp.ClientError as exc:
        # The exception's text names the host only; never a header or the form.
        raise GatewayError(f"cannot reach {base} ({type(exc).__name__})") from exc
    except TimeoutError as exc:
        raise GatewayError(f"no answer from {base} within 30 s") from exc


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def _string(answer: dict[str, Any], name: str, where: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise GatewayError(f"the answer of {where} has no {name}")
    return value


def _refusal(status: int, answer: dict[str, Any]) -> str:
    """RFC 6749 §5.2: the server's error code and description, cut short and on one line."""
    error = answer.get("error") if isinstance(answer.get("error"), str) else "no OAuth error"
    description = answer.get("error_description")
    text = f"token request refused: HTTP {status} {error}"
    if isinstance(description, str) and description:
        text += f" ({' '.join(description.split())[:_MAX_ERROR_CHARS]})"
    return text


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    clients = sub.add_parser(
        "clients", help="SMART Backend Services clients (clinics, research teams)"
    ).add_subparsers(dest="clients", required=True)
    client_add = clients.add_parser("add", help="register a client's public keys and scopes")
    client_add.add_argument("--zone", required=True)
    client_add.add_argument("--site", required=True, help="the site id, e.g. hainan-general")
    client_add.add_argument("--role", required=True, choices=ROLES)
    client_add.add_argument(
        "--jwks", required=True, type=Path, help="JSON file of the client's public keys (JWKS)"
    )
    client_add.add_argument(
        "--scopes", required=True, help='space-separated, e.g. "system/Observation.rs"'
    )
    client_add.set_defaults(func=cmd_clients_add)
    client_revoke = clients.add_parser("revoke", help="revoke a client and its access tokens")
    client_revoke.add_argument("--zone", required=True)
    client_revoke.add_argument("--client-id", required=True)
    client_revoke.set_defaults(func=cmd_clients_revoke)
    keygen = clients.add_parser(
        "keygen", help="make a client's signing key pair: PREFIX.pem (private), PREFIX.jwks.json"
    )
    keygen.add_argument("--out", required=True, type=Path, help="file name prefix, e.g. clinic")
    keygen.add_argument("--alg", choices=ALGORITHMS, default="ES384")
    keygen.set_defaults(func=cmd_clients_keygen)

    token = sub.add_parser(
        "token", help="get a SMART access token for a client (printed alone on stdout)"
    )
    token.add_argument("--client-id", required=True)
    token.add_argument("--key", required=True, type=Path, help="the client's private key (PEM)")
    token.add_argument(
        "--scope", default=DEFAULT_SCOPE, help=f'space-separated (default "{DEFAULT_SCOPE}")'
    )
    token.add_argument(
        "--url", help="the gateway's base URL (default: the settings' public base URL)"
    )
    token.set_defaults(func=cmd_token)
