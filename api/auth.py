"""Bearer API keys: configured in plain text or as SHA-256 hashes, held only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return f"cxp_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class ApiKeys:
    hashes: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """'key1,sha256:<hex>,...': removing an entry from the configuration revokes it."""
        hashes = set()
        for entry in filter(None, (part.strip() for part in text.split(","))):
            if entry.startswith("sha256:"):
                digest = entry.removeprefix("sha256:").lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError("a sha256: API key entry needs 64 hex digits")
                hashes.add(digest)
            else:
                hashes.add(hash_key(entry))
        if not hashes:
            raise ValueError("no API keys configured")
        return cls(frozenset(hashes))

    def accepts(self, token: str) -> bool:
        digest = hash_key(token)
        # Compare with every configured hash in constant time: no timing hint which is close.
        return any([hmac.compare_digest(digest, known) for known in self.hashes])
