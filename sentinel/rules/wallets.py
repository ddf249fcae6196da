"""Cryptocurrency wallet addresses found in text, kept only when their checksum holds."""

from __future__ import annotations

import hashlib
import re

from sentinel.rules.keccak import keccak256

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58)}
_B58_CLASS = "1-9A-HJ-NP-Za-km-z"

# Monero mainnet network prefixes (single-byte varints) and the decoded payload length
MONERO_PREFIXES = {0x12: ("monero", 69), 0x2A: ("monero_subaddress", 69)}
MONERO_INTEGRATED = (0x13, 77)
# Monero base58 works on 8-byte blocks; a block of n bytes takes _BLOCK_CHARS[n] characters
_BLOCK_CHARS = (0, 2, 3, 5, 6, 7, 9, 10, 11)
_CHARS_TO_BYTES = {c: n for n, c in enumerate(_BLOCK_CHARS)}

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3

_CANDIDATES = re.compile(
    rf"(?<![{_B58_CLASS}])(?P<monero>[48][{_B58_CLASS}]{{94}}(?:[{_B58_CLASS}]{{11}})?)"
    rf"(?![{_B58_CLASS}])"
    rf"|(?<![{_B58_CLASS}])(?P<btc>[13][{_B58_CLASS}]{{25,34}})(?![{_B58_CLASS}])"
    r"|(?<![0-9A-Za-z])(?P<bech32>bc1[02-9ac-hj-np-z]{11,71}|BC1[02-9AC-HJ-NP-Z]{11,71})"
    r"(?![0-9A-Za-z])"
    r"|(?<![0-9A-Za-z])(?P<eth>0x[0-9a-fA-F]{40})(?![0-9A-Za-z])"
)

# a wallet key right before an address: `"user": "`, `--wallet=`, `-u `, `payout address: `
_KEY_BEFORE = re.compile(
    r"(?:\b(?:wallet|payout|address|addr|user|username|login)|(?<![\w-])-(?:u|wal|o))"
    r"[\"'\]]?[ \t]{0,4}[=:]?[ \t]{0,4}[\"']?$",
    re.IGNORECASE,
)
KEY_LOOKBACK = 40  # characters before an address searched for its key


def keyed(before: str) -> bool:
    """Whether the text right before an address ends with a wallet/payout/address/user key."""
    return _KEY_BEFORE.search(before[-KEY_LOOKBACK:]) is not None


def monero_kind(address: str) -> str | None:
    """'monero', 'monero_subaddress' or 'monero_integrated' if the Keccak checksum holds."""
    raw = _monero_b58decode(address)
    if raw is None or len(raw) < 5:
        return None
    body, checksum = raw[:-4], raw[-4:]
    if keccak256(body)[:4] != checksum:
        return None
    if raw[0] == MONERO_INTEGRATED[0] and len(raw) == MONERO_INTEGRATED[1]:
        return "monero_integrated"
    kind, length = MONERO_PREFIXES.get(raw[0], ("", 0))
    return kind if len(raw) == length else None


def _monero_b58decode(text: str) -> bytes | None:
    out = bytearray()
    for off in range(0, len(text), 11):
        chunk = text[off : off + 11]
        size = _CHARS_TO_BYTES.get(len(chunk))
        if size is None:
            return None
        value = 0
        for c in chunk:
            digit = _B58_INDEX.get(c)
            if digit is None:
                return None
            value = value * 58 + digit
        if value >> (8 * size):
            return None
        out += value.to_bytes(size, "big")
    return bytes(out)


def bitcoin_legacy_ok(address: str) -> bool:
    """Base58Check with a P2PKH (0x00) or P2SH (0x05) version byte."""
    value = 0
    for c in address:
        digit = _B58_INDEX.get(c)
        if digit is None:
            return False
        value = value * 58 + digit
    zeros = len(address) - len(address.lstrip("1"))
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    raw = b"\0" * zeros + body
    if len(raw) != 25 or raw[0] not in (0x00, 0x05):
        return False
    return hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4] == raw[-4:]


def _bech32_polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= gen[i]
    return chk


def bech32_segwit_ok(address: str) -> bool:
    """A mainnet segwit address: bech32 for version 0, bech32m for 1..16, valid program."""
    if address not in (address.lower(), address.upper()):
        return False
    addr = address.lower()
    hrp, _, data_part = addr.rpartition("1")
    if hrp != "bc" or len(addr) > 90 or len(data_part) < 7:
        return False
    data = [BECH32_CHARSET.index(c) for c in data_part]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    const = _bech32_polymod(expanded + data)
    version, words = data[0], data[1:-6]
    if version > 16 or const != (_BECH32_CONST if version == 0 else _BECH32M_CONST):
        return False
    acc, bits, program = 0, 0, bytearray()
    for w in words:
        acc = (acc << 5) | w
        bits += 5
        if bits >= 8:
            bits -= 8
            program.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        return False
    if version == 0:
        return len(program) in (20, 32)
    return 2 <= len(program) <= 40


def eip55_ok(address: str) -> bool:
    """A mixed-case Ethereum address whose capitalisation matches its EIP-55 checksum.

    All-lowercase and all-uppercase addresses carry no checksum and are not accepted.
    """
    hexpart = address[2:]
    if hexpart.lower() == hexpart or hexpart.upper() == hexpart:
        return False
    digest = keccak256(hexpart.lower().encode()).hex()
    return all(
        c.isdigit() or (c.isupper() == (int(d, 16) >= 8))
        for c, d in zip(hexpart, digest[:40], strict=True)
    )


def classify(candidate: str, shape: str) -> str | None:
    """The wallet kind of a candidate of the given regex shape, or None if it fails."""
    if shape == "monero":
        return monero_kind(candidate)
    if shape == "btc":
        return "bitcoin" if bitcoin_legacy_ok(candidate) else None
    if shape == "bech32":
        return "bitcoin_bech32" if bech32_segwit_ok(candidate) else None
    return "ethereum" if eip55_ok(candidate) else None


def find_wallets(text: str, limit: int = 256) -> list[tuple[str, str]]:
    """(kind, address) for every checksum-valid address in `text`, first seen first.

    At most `limit` distinct candidates are checked, which bounds the cost on hostile input.
    """
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for m in _CANDIDATES.finditer(text):
        candidate, shape = m.group(), m.lastgroup or ""
        if candidate in seen:
            continue
        seen.add(candidate)
        if len(seen) > limit:
            break
        kind = classify(candidate, shape)
        if kind:
            found.append((kind, candidate))
    return found
