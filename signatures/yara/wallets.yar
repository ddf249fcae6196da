/*
 * Cryptocurrency wallet addresses. Sentinel's own rules. A hit is only a candidate:
 * sentinel.wallets checks each matched address (Monero base58 blocks and Keccak-256
 * checksum, Bitcoin Base58Check and bech32/bech32m, Ethereum EIP-55) and drops the rule
 * when none holds. The severity is then set per file (sentinel/rules/filecontext.py): a
 * Monero address is medium wherever it stands, a Bitcoin or Ethereum address medium
 * beside a wallet/payout/address/user key and low when bare, and every address low in
 * package and test trees (site-packages, node_modules, tests/). Monero addresses are
 * matched bare (two-character atoms); a legacy Bitcoin address begins with one free digit,
 * which gives libyara no usable atom, so its rule needs a keyword before the address.
 */

rule wallet_monero
{
    meta:
        category = "wallet"
        severity = "medium"
        description = "Monero address (standard, subaddress or integrated)"
    strings:
        $a = /\b(4[1-9A-M]|8[2-9A-C])[1-9A-HJ-NP-Za-km-z]{93}([1-9A-HJ-NP-Za-km-z]{11})?\b/
    condition:
        $a
}

rule wallet_bitcoin_legacy
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Bitcoin legacy address (P2PKH/P2SH) after a wallet/user key"
    strings:
        $a = /(user|USER|User|wallet|WALLET|Wallet|payout|PAYOUT|Payout|login|LOGIN|address|ADDRESS|Address|addr|ADDR|btc|BTC|bitcoin|Bitcoin|BITCOIN|-u)["']?[ \t]{0,4}[=:]?[ \t]{0,4}["']?[13][1-9A-HJ-NP-Za-km-z]{25,34}/
    condition:
        $a
}

rule wallet_bitcoin_bech32
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Bitcoin segwit address (bech32 or bech32m)"
    strings:
        $a = /\bbc1[qp][02-9ac-hj-np-z]{38,58}\b/
        $b = /\bBC1[QP][02-9AC-HJ-NP-Z]{38,58}\b/
    condition:
        any of them
}

rule wallet_ethereum
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Ethereum address with a valid EIP-55 mixed-case checksum"
    strings:
        $a = /\b0x[0-9a-fA-F]{40}\b/
    condition:
        $a
}
