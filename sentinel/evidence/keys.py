"""The agent's Ed25519 signing key: made at first start in state_dir (0600), never rotated here."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "signing.key"


class KeyFileError(Exception):
    """A key file that cannot be used; the message names the file."""


def key_path(state_dir: str) -> str:
    return os.path.join(state_dir, KEY_FILE)


def load_or_create(state_dir: str) -> Ed25519PrivateKey:
    """The key in state_dir, created (0600, O_EXCL, no symlink followed) when absent."""
    path = key_path(state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    try:
        return load_private(path)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        return load_private(path)  # another process made it first
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_private(path: str) -> Ed25519PrivateKey:
    """Read a PEM private key; refuses a symlink, anything but a regular file, and a file
    another user owns or could read or write (its private half may not be ours alone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(f"{path}: a symlink, not the key file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if st.st_uid not in (os.geteuid(), 0):
            raise KeyFileError(
                f"{path}: owned by uid {st.st_uid}, not by root or uid {os.geteuid()}"
            )
        if st.st_mode & 0o077:
            raise KeyFileError(f"{path}: mode {st.st_mode & 0o777:04o}, not 0600")
        data = os.read(fd, 64 * 1024)
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public(path: str) -> Ed25519PublicKey:
    """A public key from a PEM file (as `sentinel log pubkey` prints it)."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """sha256 of the raw public key, first 16 hex digits."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
