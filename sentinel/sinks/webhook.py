"""Generic webhook: the alert record as JSON, signed per the Standard Webhooks spec.

Headers: `webhook-id` (the finding id, the same on every retry and replay, so receivers
can drop duplicates), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the
base64 part of the `whsec_...` secret. Without a secret the request is sent unsigned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from sentinel.core.config import ConfigError, SinkConfig
from sentinel.core.context import Context
from sentinel.sinks import register
from sentinel.sinks._http.delivery import HttpSink, Outbound, to_json

SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the part after 'whsec_' is not base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes")
    return key


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `msg_id.timestamp.body`."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


@register
class WebhookSink(HttpSink):
    type = "webhook"

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.key: bytes | None = None
        if cfg.secret:
            try:
                self.key = decode_secret(cfg.secret)
            except ValueError as exc:
                raise ConfigError(
                    f"{ctx.config.source}: sinks '{self.name}': 'secret' {exc}"
                ) from None

    def checkpoint(self, record: dict[str, Any]) -> None:
        """Carried as its own POST: the receiver keeps an off-box anchor of the log."""
        self.enqueue(Outbound("checkpoint", record, "log"))

    def body(self, msg: Outbound) -> bytes:
        return to_json(msg.record)

    def extra_headers(self, msg: Outbound, body: bytes) -> dict[str, str]:
        msg_id = str(msg.record.get("id", msg.key))
        timestamp = str(int(time.time()))
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp}
        if self.key is not None:
            headers["webhook-signature"] = sign(self.key, msg_id, timestamp, body)
        return headers
