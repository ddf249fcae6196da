"""Wallet address validation: Keccak-256, Monero, Bitcoin legacy and segwit, Ethereum."""

from __future__ import annotations

import hashlib
import os

import corpus
import pytest

from sentinel.rules import wallets
from sentinel.rules.keccak import _sponge, keccak256


def test_keccak256_known_answers() -> None:
    # Keccak-256 (original padding) differs from FIPS SHA3-256 on the same input
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"").hex() == empty
    assert keccak256(b"").hex() != hashlib.sha3_256(b"").hexdigest()
    abc = "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    assert keccak256(b"abc").hex() == abc


@pytest.mark.parametrize("size", [0, 1, 135, 136, 137, 272, 1000])
def test_permutation_matches_sha3_with_fips_padding(size: int) -> None:
    data = os.urandom(size)
    assert _sponge(data, 0x06) == hashlib.sha3_256(data).digest()


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: corpus.monero_address("standard"), "monero"),
        (lambda: corpus.monero_address("subaddress"), "monero_subaddress"),
        (lambda: corpus.monero_address("integrated"), "monero_integrated"),
        (corpus.btc_legacy_address, "bitcoin"),
        (lambda: corpus.btc_legacy_address(p2sh=True), "bitcoin"),
        (lambda: corpus.bech32_address(0, 20), "bitcoin_bech32"),
        (lambda: corpus.bech32_address(0, 32), "bitcoin_bech32"),
        (lambda: corpus.bech32_address(1, 32), "bitcoin_bech32"),
        (corpus.eth_address, "ethereum"),
    ],
)
def test_random_valid_addresses_are_found_and_corrupted_ones_are_not(make, kind) -> None:
    for _ in range(10):
        address = make()
        assert wallets.find_wallets(f"pay to {address}, thanks") == [(kind, address)]
        assert wallets.find_wallets(f"pay to {corpus.corrupt(address)}") == []


def test_shapes_of_monero_addresses() -> None:
    assert corpus.monero_address()[0] == "4" and len(corpus.monero_address()) == 95
    assert corpus.monero_address("subaddress")[0] == "8"
    assert len(corpus.monero_address("integrated")) == 106


def test_random_lookalikes_are_not_wallets() -> None:
    text = "\n".join(
        [corpus.random_base58("4", 95) for _ in range(50)]
        + [corpus.random_base58("8", 95) for _ in range(50)]
        + [corpus.random_base58("1", 34) for _ in range(50)]
        + [corpus.random_base58("3", 34) for _ in range(50)]
        + [os.urandom(32).hex() for _ in range(50)]  # sha256 digests
        + [os.urandom(20).hex() for _ in range(50)]  # git object ids
    )
    assert wallets.find_wallets(text) == []


def test_ethereum_without_checksum_case_is_not_reported() -> None:
    address = corpus.eth_address()
    assert wallets.find_wallets(address.lower()) == []
    assert wallets.find_wallets("0x" + address[2:].upper()) == []


def test_bech32_mixed_case_and_wrong_variant_are_rejected() -> None:
    v0 = corpus.bech32_address(0, 20)
    assert wallets.find_wallets(v0.upper()) == [("bitcoin_bech32", v0.upper())]
    assert not wallets.bech32_segwit_ok(v0[:10] + v0[10:].upper())
    # a version-1 program with a bech32 (not bech32m) checksum is invalid (BIP-350)
    assert not wallets.bech32_segwit_ok("bc1p" + v0[4:])


def test_address_inside_a_longer_base58_run_is_not_matched() -> None:
    address = corpus.monero_address()
    assert wallets.find_wallets("A" + address) == []
    assert wallets.find_wallets(address + "z") == []
    assert wallets.find_wallets(f'"user": "{address}.rig1+5000"') == [("monero", address)]


def test_find_wallets_dedupes_and_bounds_work() -> None:
    address = corpus.monero_address()
    assert wallets.find_wallets(f"{address} {address}") == [("monero", address)]
    noise = " ".join(corpus.random_base58("4", 95) for _ in range(20))
    assert wallets.find_wallets(f"{noise} {address}", limit=5) == []
    assert wallets.find_wallets(f"{noise} {address}") == [("monero", address)]
