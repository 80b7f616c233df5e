"""Short-lived client keys: they stand for the key that minted them until they expire, and a forged,
expired or orphaned one opens nothing."""

from __future__ import annotations

from services.gateway.auth import Keys
from services.gateway.client_secrets import ClientSecrets, subprotocol_key

KEY, OTHER = "k" * 40, "o" * 40


def test_a_client_secret_stands_for_its_key_until_it_expires() -> None:
    now = [1_000_000.0]
    keys = Keys([KEY, OTHER], ClientSecrets([KEY, OTHER], clock=lambda: now[0]))
    secret, expires_at = keys.secrets.mint(KEY, 60)
    assert secret.startswith("ek_") and KEY not in secret and expires_at == 1_000_060
    assert keys.identify(secret) == keys.identify(KEY) != keys.identify(OTHER)
    now[0] += 59.9
    assert keys.identify(secret) is not None
    now[0] += 0.1
    assert keys.identify(secret) is None  # expired: refused


def test_forged_tampered_or_orphaned_secrets_open_nothing() -> None:
    secret, _ = ClientSecrets([KEY]).mint(KEY, 600)
    payload, signature = secret.split(".")
    assert Keys([KEY]).identify(payload + "." + signature[::-1]) is None
    assert Keys([KEY]).identify(secret[:-1]) is None
    assert Keys([KEY]).identify("ek_garbage") is None and Keys([KEY]).identify("ek_") is None
    assert Keys([OTHER]).identify(secret) is None  # its key was removed from the gateway
    assert Keys([KEY]).identify(secret) is not None  # another replica with the same key accepts it


def test_a_client_secret_does_not_mint_another() -> None:
    keys = Keys([KEY])
    secret, _ = keys.secrets.mint(KEY, 600)
    assert keys.real_key({"authorization": f"Bearer {KEY}"}) == KEY
    assert keys.real_key({"authorization": f"Bearer {secret}"}) is None
    assert keys.real_key({"authorization": "Bearer wrong"}) is None and keys.real_key({}) is None


def test_the_key_a_browser_sends_as_a_subprotocol() -> None:
    assert subprotocol_key("realtime, openai-insecure-api-key.abc, openai-beta.realtime-v1") == (
        ["realtime", "openai-insecure-api-key.abc", "openai-beta.realtime-v1"], "abc")
    assert subprotocol_key("") == ([], None)
