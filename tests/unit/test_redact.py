"""Evidence excerpts: capped, and no secret survives."""

from __future__ import annotations

import base64
import secrets

from sentinel.rules.redact import MARK, MAX_LINE, MAX_LINES, excerpt, redact


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


def test_secrets_in_common_shapes_that_were_missed() -> None:
    """Shapes a cron line or an rc file carries: a *_PASS variable, a JSON field, curl's
    -u user:password, a token given as a URL's user name."""
    cases = {
        "DB_PASS=hunter2x /usr/bin/backup": "hunter2x",
        "export SMTP_PASS='hunter2 y' ": "hunter2 y",
        'curl -d \'{"password": "hunter2z"}\' http://x': "hunter2z",
        '{"api_key":"k3y-value-here"}': "k3y-value-here",
        "curl -u admin:s3cr3t-pw https://x/": "s3cr3t-pw",
        "curl --user admin:s3cr3t-pw https://x/": "s3cr3t-pw",
        "git pull https://0123456789abcdef0123456789abcdef@git.example/r": "0123456789abcdef",
    }
    for line, secret in cases.items():
        assert secret not in redact(line), line
    assert redact("sudo -u root /bin/true") == "sudo -u root /bin/true"  # a user is evidence
    assert redact("PassEnvironment=LD_PRELOAD") == "PassEnvironment=LD_PRELOAD"


def test_a_fake_key_header_does_not_hide_the_lines_after_it() -> None:
    """A BEGIN line with no key body after it cannot blank out the rest of the excerpt."""
    out = excerpt(["-----BEGIN RSA PRIVATE KEY-----", "* * * * * nohup /tmp/.x/xmrig &", "x=1"])
    assert "* * * * * nohup /tmp/.x/xmrig &" in out and "x=1" in out
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(3)]
    header = ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,00FF", ""]
    lines = ["-----BEGIN RSA PRIVATE KEY-----", *header, *body, "-----END RSA PRIVATE KEY-----"]
    assert excerpt([*lines, "after"]) == ["<redacted> private key", "after"]


def test_argv_redaction_keeps_pool_and_wallet() -> None:
    """One helper for argv (forensics and evidence.recent): a key written inside one word,
    URL credentials and tokens go; a pool URL and a wallet are the evidence and stay."""
    from sentinel.rules.redact import redact_argv

    body = base64.b64encode(secrets.token_bytes(48)).decode()
    key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----"
    wallet = "4" + "A" * 94
    argv = ["sh", "-c", f"echo '{key}' > k", "git", "https://bob:pw1234@git.example/r"]
    argv += ["xmrig", "-o", "stratum+tcp://pool.test:3333", "-u", wallet, "--pass", "x"]
    out = redact_argv(argv)
    assert body not in str(out) and "pw1234" not in str(out)
    assert out[-7:] == ["xmrig", "-o", "stratum+tcp://pool.test:3333", "-u", wallet, "--pass", MARK]
