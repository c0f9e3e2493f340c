"""SecretBox: AES-256-GCM with clear errors for every way a key can go wrong."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from spoonfeeder.crypto import SecretBox, load_secret_box, mask_secret
from spoonfeeder.errors import SecretError

KEY_A = "aa" * 32
KEY_B = "bb" * 32


def test_round_trip_and_format() -> None:
    box = SecretBox.from_hex(KEY_A)
    token = box.encrypt("sk-live-1234567890abcd")
    assert token.startswith("v1:")
    raw = base64.b64decode(token[3:])
    assert len(raw) == 12 + 16 + len("sk-live-1234567890abcd")  # iv | tag | ciphertext
    assert "sk-live" not in token
    assert box.decrypt(token) == "sk-live-1234567890abcd"


def test_same_secret_encrypts_differently_each_time() -> None:
    box = SecretBox.from_hex(KEY_A)
    assert box.encrypt("same") != box.encrypt("same")


def test_tampered_value_is_detected() -> None:
    box = SecretBox.from_hex(KEY_A)
    raw = bytearray(base64.b64decode(box.encrypt("sk-secret-value")[3:]))
    raw[-1] ^= 0x01
    tampered = "v1:" + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SecretError, match="tampered"):
        box.decrypt(tampered, what="API key of the OpenAI setting")


def test_wrong_key_names_the_setting() -> None:
    token = SecretBox.from_hex(KEY_A).encrypt("sk-secret-value")
    with pytest.raises(SecretError) as info:
        SecretBox.from_hex(KEY_B).decrypt(token, what="API key of profile 'lab'")
    assert "API key of profile 'lab'" in str(info.value)
    assert "ENCRYPTION_KEY" in str(info.value)


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "aa" * 31, "aa" * 33])
def test_malformed_encryption_key_gives_a_broken_box_not_a_crash(bad: str) -> None:
    box = SecretBox.from_hex(bad)
    assert not box.usable
    with pytest.raises(SecretError, match="ENCRYPTION_KEY is malformed: it must be 64 hexadecimal"):
        box.encrypt("x")
    with pytest.raises(SecretError, match="Cannot decrypt the API key of the Gemini setting"):
        box.decrypt("v1:AAAA", what="API key of the Gemini setting")


@pytest.mark.parametrize("garbage", ["plaintext-key", "v1:not base64!", "v1:AAAA"])
def test_corrupted_values_are_reported(garbage: str) -> None:
    with pytest.raises(SecretError, match="stored secret"):
        SecretBox.from_hex(KEY_A).decrypt(garbage)


def test_generated_key_file_is_private_and_reused(tmp_path: Path) -> None:
    box, notice = load_secret_box(None, tmp_path)
    key_file = tmp_path / "secret.key"
    assert notice and str(key_file) in notice
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt("sk-abc")
    again, second_notice = load_secret_box(None, tmp_path)
    assert second_notice is None
    assert again.decrypt(token) == "sk-abc"


def test_encryption_key_wins_over_key_file(tmp_path: Path) -> None:
    load_secret_box(None, tmp_path)
    box, notice = load_secret_box(KEY_A, tmp_path)
    assert notice is None
    assert SecretBox.from_hex(KEY_A).decrypt(box.encrypt("k")) == "k"


def test_mask_never_shows_the_whole_key() -> None:
    assert mask_secret("sk-proj-abcdefghijklmnopabcd") == "sk-…abcd"
    assert mask_secret("short") == "…"
    assert mask_secret("tenchars10") == "…10"
    assert mask_secret("") == ""
