"""Firebase App Check on loopback: a JWKS endpoint serving keys the tests generate, and App Check
tokens signed with them (or forged, for the tests that must see them refused)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT_NUMBER = "123456789012"
APP_ID = "1:123456789012:ios:0a1b2c3d4e5f60718293a4"
JWKS_PATH = "/v1/jwks"


@functools.cache
def rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A private key generated once per test run for `name`."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The key's public half as Firebase publishes it."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a valid App Check token for PROJECT_NUMBER and APP_ID (1 hour), with overrides;
    an override of None removes the claim."""
    now = int(time.time())
    base = {
        "iss": f"https://firebaseappcheck.googleapis.com/{PROJECT_NUMBER}",
        "aud": [f"projects/{PROJECT_NUMBER}", "projects/relay-demo"],
        "sub": APP_ID,
        "iat": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(kid: str = "key-1", key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
    """An RS256 App Check token signed with `key` (default: the key published as `kid`)."""
    signing_key = key or rsa_key(kid)
    return jwt.encode(claims(**overrides), signing_key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(**overrides: Any) -> str:
    """`alg: none`: claims a valid token would have, and no signature."""
    header = {"alg": "none", "typ": "JWT", "kid": "key-1"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims(**overrides)).encode())}."


def hs256_with_public_key(kid: str = "key-1") -> str:
    """The classic key-confusion forgery: HS256 keyed with the published RSA public key's PEM."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem(rsa_key(kid)), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


class FakeJwks:
    """Serves the published keys at JWKS_PATH with `Cache-Control: public, max-age=<max_age>`.

    `fault`: None (answer), "down" (503), "hang" (never answer), "garbage" (200, not JSON), "deep"
    (200, JSON nested past any parser's recursion limit), "huge" (200, an endless body). `delay`:
    seconds before a normal answer."""

    def __init__(self, *kids: str, max_age: int = 21600) -> None:
        self.published = {kid: rsa_key(kid) for kid in kids or ("key-1",)}
        self.max_age = max_age
        self.fault: str | None = None
        self.delay = 0.0
        self.requests = 0
        self.url = ""

    def publish(self, *kids: str) -> None:
        """Replace the published set (key rotation)."""
        self.published = {kid: rsa_key(kid) for kid in kids}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(JWKS_PATH, self.serve)
        return app

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.fault == "down":
            return web.Response(status=503)
        if self.fault == "hang":
            await asyncio.sleep(3600)
        if self.fault == "garbage":
            return web.Response(body=b"<html>not a key set</html>", content_type="text/html")
        if self.fault == "deep":
            return web.Response(body=b"[" * 60000, content_type="application/json")
        if self.fault == "huge":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"keys": [')
            for _ in range(1000):  # 64 MB, unless the reader stops first
                await response.write(b" " * 65536)
            return response
        if self.delay:
            await asyncio.sleep(self.delay)
        document = {"keys": [public_jwk(kid, key) for kid, key in self.published.items()]}
        return web.json_response(document, headers={"Cache-Control": f"public, max-age={self.max_age}"})
