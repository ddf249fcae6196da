"""Evidence excerpts: capped, and no secret survives."""

from __future__ import annotations

import base64
import secrets

from sentinel.rules.redact import MAX_LINE, MAX_LINES, excerpt, redact


def test_private_key_body_is_dropped_whole() -> None:
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(5)]
    lines = ["-----BEGIN OPENSSH PRIVATE KEY-----", *body, "-----END OPENSSH PRIVATE KEY-----"]
    out = excerpt(["# key", *lines, "after"])
    assert out == ["# key", "<redacted> private key", "after"]
    assert not any(b in " ".join(excerpt(body[1:3])) for b in body)  # bodies without a header


def test_tokens_passwords_and_url_credentials() -> None:
    gh = "ghp_" + secrets.token_hex(18)
    cases = {
        f"git clone https://bob:{gh}@github.example/x": gh,
        "curl -H 'Authorization: Bearer abc.def.ghi' http://x": "abc.def.ghi",
        "mysql --password=hunter2 db": "hunter2",
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY": "wJalrXUtnFEMI",
        "key AKIAABCDEFGHIJKLMNOP here": "AKIAABCDEFGHIJKLMNOP",
    }
    for line, secret in cases.items():
        assert secret not in redact(line), line
    assert redact("@reboot /tmp/.x/run") == "@reboot /tmp/.x/run"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + "A" * 60 + " x@test"
    assert redact(key) == key  # a public key is evidence


def test_excerpt_is_capped() -> None:
    out = excerpt(["x" * 10_000] * 1_000)
    assert len(out) == MAX_LINES and all(len(line) <= MAX_LINE + 3 for line in out)
