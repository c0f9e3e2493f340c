"""SecretBox: AES-256-GCM for API keys stored in the database.

Stored form: ``"v1:" + base64(iv[12] | tag[16] | ciphertext)``. GCM authenticates
the ciphertext, so a changed key or a tampered value fails loudly instead of
decrypting to garbage.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spoonfeeder.errors import SecretError

PREFIX = "v1:"
IV_BYTES = 12
TAG_BYTES = 16
KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts short secrets with one 256-bit key.

    A box built from an unusable key (see `SecretBox.broken`) still exists so the
    app keeps running; every use raises `SecretError` with the reason.
    """

    def __init__(
        self, key: bytes | None, *, problem: str | None = None, source: str = "ENCRYPTION_KEY"
    ) -> None:
        if key is not None and len(key) != 32:
            raise SecretError("An AES-256 key must be exactly 32 bytes")
        self._aead = AESGCM(key) if key is not None else None
        self.problem = problem
        self.source = source  # where the key came from, as messages name it

    @classmethod
    def from_hex(cls, hex_key: str, *, source: str = "ENCRYPTION_KEY") -> SecretBox:
        """Build from a hex key; a malformed key yields a broken box, not a crash."""
        text = hex_key.strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(text) != 64 or len(key) != 32:
            return cls.broken(
                f"{source} is malformed: it must be 64 hexadecimal characters "
                f"(32 bytes), got {len(text)} characters"
                + ("" if _is_hex(text) else " including non-hex ones"),
                source=source,
            )
        return cls(key, source=source)

    @classmethod
    def broken(cls, problem: str, *, source: str = "ENCRYPTION_KEY") -> SecretBox:
        return cls(None, problem=problem, source=source)

    @property
    def usable(self) -> bool:
        return self._aead is not None

    def encrypt(self, plaintext: str) -> str:
        aead = self._require_key("encrypt")
        iv = os.urandom(IV_BYTES)
        sealed = aead.encrypt(iv, plaintext.encode("utf-8"), None)
        ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
        return PREFIX + base64.b64encode(iv + tag + ciphertext).decode("ascii")

    def decrypt(self, token: str, *, what: str = "secret") -> str:
        """Decrypt a stored value; `what` names the setting in the error message."""
        aead = self._require_key(f"decrypt the {what}")
        if not token.startswith(PREFIX):
            raise SecretError(f"The stored {what} is not in a known encrypted format")
        try:
            raw = base64.b64decode(token[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise SecretError(f"The stored {what} is corrupted (not valid base64)") from None
        if len(raw) < IV_BYTES + TAG_BYTES:
            raise SecretError(f"The stored {what} is corrupted (too short)")
        iv, sealed = raw[:IV_BYTES], raw[IV_BYTES:]
        tag, ciphertext = sealed[:TAG_BYTES], sealed[TAG_BYTES:]
        try:
            return aead.decrypt(iv, ciphertext + tag, None).decode("utf-8")
        except InvalidTag:
            raise SecretError(
                f"The stored {what} cannot be decrypted: {self.source} differs from the key it "
                "was saved with, or the value was tampered with. Enter the key again to replace it."
            ) from None

    def _require_key(self, action: str) -> AESGCM:
        if self._aead is None:
            raise SecretError(f"Cannot {action}: {self.problem}")
        return self._aead


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def load_secret_box(encryption_key: str | None, data_dir: Path) -> tuple[SecretBox, str | None]:
    """The box for ENCRYPTION_KEY, or for a key generated once into ``data/secret.key``.

    Returns the box and a notice for the operator (generated key, broken key), if any.
    """
    if encryption_key:
        box = SecretBox.from_hex(encryption_key)
        return box, box.problem
    key_file = data_dir / KEY_FILE_NAME
    if key_file.exists():
        box = SecretBox.from_hex(key_file.read_text(), source=str(key_file))
        return box, box.problem
    data_dir.mkdir(parents=True, exist_ok=True)
    hex_key = secrets.token_hex(32)
    # O_EXCL: two processes starting at once must not each write their own key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_secret_box(None, data_dir)
    with os.fdopen(fd, "w") as handle:
        handle.write(hex_key + "\n")
    notice = (
        f"No ENCRYPTION_KEY set: generated one into {key_file} (mode 0600). Back it up; "
        "stored API keys cannot be read without it."
    )
    return SecretBox(bytes.fromhex(hex_key), source=str(key_file)), notice


def mask_secret(secret: str | None) -> str:
    """A recognisable but useless form of a key: ``sk-…abcd``. Never the whole key."""
    if not secret:
        return ""
    if len(secret) < 8:
        return "…"
    if len(secret) < 12:
        return "…" + secret[-2:]
    return secret[:3] + "…" + secret[-4:]
