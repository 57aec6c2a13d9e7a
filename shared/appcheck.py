"""Firebase App Check: the `X-Firebase-AppCheck` token (an RS256 JWT) verified as Firebase documents
it, against Firebase's public keys (a JWKS) read on the relay's own loop and cached.

AppCheckRefused (401) means the request has no valid token; AppCheckUnavailable (503) means the keys
cannot be read and none are cached. Both are raised only in enforce mode: monitor mode counts and
logs them and lets the request through. A token is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from .settings import Settings

log = logging.getLogger("cij_relay")

ISSUER_PREFIX = "https://firebaseappcheck.googleapis.com/"
MAX_TOKEN_CHARS = 4096  # App Check tokens are about 1 KB (1.5 KB with a 4096-bit key)
LEEWAY_SECONDS = 30  # clock skew allowed on exp/iat/nbf
# The JWKS server is outside the relay: its answer is bounded in size, time and key count.
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 20
JWKS_TIMEOUT_SECONDS = 5.0
MIN_CACHE_SECONDS, MAX_CACHE_SECONDS = 60.0, 6 * 3600.0  # Firebase: never cache it for over 6 h
STALE_SECONDS = 3600.0  # keys are used this long past their max-age while every refresh fails
UNKNOWN_KID_SECONDS = 60.0  # an unknown `kid` refetches the keys at most this often
RETRY_SECONDS = 10.0  # after a failed fetch, no other fetch before this
LOG_SECONDS = 60.0  # refusals are logged as one summary line at most this often
# Tokens already verified, remembered (by SHA-256) until they expire or a new key set arrives: an
# app sends the same token until the SDK refreshes it, and a repeat then costs a few µs, not a
# signature check. ~360 bytes each: at most ~4 MB.
MAX_VERIFIED = 10_000
# Three base64url segments (the last empty for `alg: none`, refused later by name).
_COMPACT_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,9})\"?\s*(?:,|$)", re.IGNORECASE)


class AppCheckRefused(Exception):
    """The request carries no valid App Check token (401); `reason` is a fixed word for counting."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"App Check token refused: {reason}")
        self.reason = reason


class AppCheckUnavailable(Exception):
    """App Check's public keys cannot be read and none are cached (503 + Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("App Check public keys unavailable")
        self.reason, self.retry_after = "keys-unavailable", retry_after


class JwksInvalid(ValueError):
    """The JWKS answer is not a usable key set."""


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWT, read only to choose the key (AppCheckRefused if it is
    not one). Checked here at C speed: a token of junk costs no more than a few microseconds."""
    if len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWT.fullmatch(token):
        raise AppCheckRefused("malformed")
    segment = token[: token.index(".")]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raise AppCheckRefused("malformed") from None
    if not isinstance(header, dict):
        raise AppCheckRefused("malformed")
    return header


def cache_seconds(cache_control: str | None) -> float:
    """How long a JWKS answer may be used: its max-age, kept within 1 minute to 6 hours."""
    match = _MAX_AGE.search(cache_control or "")
    age = float(match.group(1)) if match else MIN_CACHE_SECONDS
    return min(max(age, MIN_CACHE_SECONDS), MAX_CACHE_SECONDS)


def parse_jwks(document: Any) -> dict[str, Any]:
    """The RSA signing keys of a JWKS document by `kid` (others are skipped); raises JwksInvalid."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksInvalid("not a JWK set")
    keys: dict[str, Any] = {}
    for jwk in document["keys"][:MAX_KEYS]:
        if not (
            isinstance(jwk, dict)
            and jwk.get("kty") == "RSA"
            and jwk.get("alg", "RS256") == "RS256"
            and jwk.get("use", "sig") == "sig"
            and isinstance(jwk.get("kid"), str)
            and isinstance(jwk.get("n"), str)
            and isinstance(jwk.get("e"), str)
            and len(jwk["kid"]) <= 256
        ):
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm="RS256").key
        except (jwt.PyJWTError, ValueError):
            continue
        if 2048 <= key.key_size <= 4096:
            keys[jwk["kid"]] = key
    if not keys:
        raise JwksInvalid("no usable RS256 key")
    return keys


class Jwks:
    """App Check's public keys by `kid`: fetched single-flight on the running loop with aiohttp,
    cached for the answer's max-age, refreshed in the background once that has passed, and used up
    to STALE_SECONDS longer while refreshes fail."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.clock = url, clock  # monotonic seconds; tests move it
        self._keys: dict[str, Any] = {}
        self._fresh_until = self._usable_until = -math.inf
        self._last_attempt = self._retry_at = -math.inf
        self._fetch: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0
        self.generation = 0  # counts the key sets installed

    def usable(self) -> bool:
        """Whether the cached set may be used now; once it is past max-age, a refresh starts."""
        now = self.clock()
        if not (self._keys and now < self._usable_until):
            return False
        if now >= self._fresh_until:
            self._start_refresh()  # the next requests use the new set
        return True

    async def key(self, kid: str) -> Any:
        """The public key for `kid`; AppCheckRefused if there is none, AppCheckUnavailable if no
        keys can be had at all."""
        now = self.clock()
        if not self.usable():
            await self._refresh()
            if not (self._keys and self.clock() < self._usable_until):
                wait = self._retry_at - self.clock()  # until the next fetch may be made
                raise AppCheckUnavailable(math.ceil(wait) if wait > 1 else 1)
        key = self._keys.get(kid)
        if key is None and (self._fetch is not None or now - self._last_attempt >= UNKNOWN_KID_SECONDS):
            await self._refresh()  # rotated keys: a new kid appears in the set before it is used
            key = self._keys.get(kid)
        if key is None:
            raise AppCheckRefused("unknown-key")
        return key

    def _start_refresh(self) -> None:
        """Start a fetch unless one is in flight or the last one failed less than RETRY_SECONDS ago."""
        if self._fetch is None and self.clock() >= self._retry_at:
            self._fetch = asyncio.get_running_loop().create_task(self._fetch_once())

    async def _refresh(self) -> None:
        """Start a fetch (or join the one in flight) and wait for it; it never raises."""
        self._start_refresh()
        if self._fetch is not None:
            # Shielded: a caller that gives up (its request cancelled) does not cancel the fetch.
            await asyncio.shield(self._fetch)

    async def _fetch_once(self) -> None:
        self._last_attempt = self.clock()
        self.fetches += 1
        try:
            keys, max_age = await self._download()
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
            self._retry_at = self.clock() + RETRY_SECONDS
            usable = self._keys and self.clock() < self._usable_until
            log.warning(
                "App Check public keys could not be read (%s: %s); %s",
                type(exc).__name__,
                str(exc)[:200],
                "using the cached keys" if usable else "none cached: enforce mode answers 503",
            )
        else:
            self._keys = keys
            self.generation += 1
            self._fresh_until = self.clock() + max_age
            self._usable_until = self._fresh_until + STALE_SECONDS
        finally:
            self._fetch = None

    async def _download(self) -> tuple[dict[str, Any], float]:
        session = self._session or self._open_session()
        async with asyncio.timeout(JWKS_TIMEOUT_SECONDS):
            async with session.get(self.url, allow_redirects=False) as response:
                if response.status != 200:
                    raise JwksInvalid(f"HTTP {response.status}")
                if (response.content_length or 0) > MAX_JWKS_BYTES:
                    raise JwksInvalid("too large")
                body = bytearray()
                while chunk := await response.content.read(MAX_JWKS_BYTES + 1 - len(body)):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksInvalid("too large")
                max_age = cache_seconds(response.headers.get("Cache-Control"))
        return parse_jwks(json.loads(body)), max_age

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=2, ssl=ssl.create_default_context())
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=JWKS_TIMEOUT_SECONDS),
            headers={"User-Agent": "cij-push-relay/1.0"},
        )
        return self._session

    async def close(self) -> None:
        """Stop a fetch in flight and close the session."""
        if self._fetch is not None:
            self._fetch.cancel()
            self._fetch = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class AppCheck:
    """Checks each request's App Check token as APP_CHECK_MODE says (monitor or enforce)."""

    def __init__(self, settings: Settings, jwks: Jwks | None = None) -> None:
        project = settings.app_check_project_number
        self.enforce = settings.app_check_mode == "enforce"
        self._issuer, self._audience = f"{ISSUER_PREFIX}{project}", f"projects/{project}"
        self._app_ids = frozenset(settings.app_check_app_ids)
        self.jwks = jwks or Jwks(settings.app_check_jwks_url)
        self.failures: Counter[str] = Counter()  # by reason, since start
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -math.inf
        self._verified: OrderedDict[bytes, tuple[float, str]] = OrderedDict()  # → (valid until, app)
        self._generation = 0  # the key set the verified tokens were checked against

    async def verify(self, token: str | None) -> str:
        """The app ID (`sub`) of a valid token; raises AppCheckRefused or AppCheckUnavailable."""
        if not token:
            raise AppCheckRefused("missing")
        digest = hashlib.sha256(token.encode()).digest()
        if self.jwks.usable():
            seen = self._verified_now().get(digest)
            if seen is not None and time.time() < seen[0]:
                return seen[1]
        claims = await self._verify(token)
        verified = self._verified_now()
        if len(verified) >= MAX_VERIFIED:
            verified.popitem(last=False)
        verified[digest] = (claims["exp"] + LEEWAY_SECONDS, claims["sub"])
        return claims["sub"]

    def _verified_now(self) -> OrderedDict[bytes, tuple[float, str]]:
        """The verified tokens, forgotten whenever a new key set has been installed (a withdrawn
        key stops counting at once)."""
        if self._generation != self.jwks.generation:
            self._verified.clear()
            self._generation = self.jwks.generation
        return self._verified

    async def _verify(self, token: str) -> dict[str, Any]:
        """The token's claims, verified as Firebase documents it."""
        header = unverified_header(token)
        if header.get("alg") != "RS256":  # never `none`, HMAC (e.g. keyed with the public key) or other
            raise AppCheckRefused("algorithm")
        if header.get("typ") != "JWT" or not isinstance(header.get("kid"), str):
            raise AppCheckRefused("malformed")
        key = await self.jwks.key(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audience,  # `aud` must contain projects/<number>
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AppCheckRefused("expired") from None
        except jwt.InvalidAudienceError:
            raise AppCheckRefused("audience") from None
        except jwt.InvalidIssuerError:
            raise AppCheckRefused("issuer") from None
        except jwt.InvalidSignatureError:
            raise AppCheckRefused("signature") from None
        except jwt.PyJWTError:
            raise AppCheckRefused("invalid") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AppCheckRefused("invalid")
        if self._app_ids and subject not in self._app_ids:
            raise AppCheckRefused("app-id")
        return claims

    async def check(self, token: str | None) -> None:
        """Pass a request with a valid token. Otherwise, in enforce mode raise AppCheckRefused or
        AppCheckUnavailable; in monitor mode count it, log it and pass it."""
        try:
            await self.verify(token)
        except (AppCheckRefused, AppCheckUnavailable) as exc:
            self._count(exc.reason)
            if self.enforce:
                raise

    def _count(self, reason: str) -> None:
        """Count a failure; log a summary at most once per LOG_SECONDS (a flood is one line)."""
        self.failures[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_SECONDS:
            self._logged_at = now
            counts = ", ".join(f"{r}={n}" for r, n in sorted(self._unlogged.items()))
            log.warning(
                "App Check (%s): %d request(s) without a valid token since the last report (%s); %s",
                "enforce" if self.enforce else "monitor",
                sum(self._unlogged.values()),
                counts,
                "refused" if self.enforce else "accepted",
            )
            self._unlogged.clear()

    async def close(self) -> None:
        """Close the key fetcher."""
        await self.jwks.close()


def make_app_check(settings: Settings) -> AppCheck | None:
    """The checker APP_CHECK_MODE asks for; None when it is off."""
    return AppCheck(settings) if settings.app_check_mode != "off" else None
