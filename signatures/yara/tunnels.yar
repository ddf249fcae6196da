/*
 * Tunnel and reverse-proxy tools and their launch lines: frp, chisel, ngrok, cloudflared,
 * gost, bore, sshuttle, and reverse shells (socat, bash /dev/tcp, nc -e). Their configs
 * are in tunnel_configs.yar, whole-script reverse shells in reverse_shells.yar. Sentinel's
 * own rules. Binaries are recognised by their Go/Rust module paths (domain names alone
 * also appear in public-suffix lists, so they are not enough).
 */

rule tunnel_frp_elf
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "frp reverse proxy binary (frpc/frps)"
    strings:
        $m1 = "github.com/fatedier/frp"
        $m2 = "frpc.ini"
        $m3 = "frpc.toml"
    condition:
        uint32(0) == 0x464c457f and filesize < 100MB and $m1 and any of ($m2, $m3)
}

rule tunnel_chisel_elf
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "chisel TCP/UDP-over-HTTP tunnel binary"
    strings:
        $m1 = "github.com/jpillora/chisel"
        $m2 = "chisel-v3"
    condition:
        uint32(0) == 0x464c457f and filesize < 100MB and any of them
}

rule tunnel_chisel_command
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "chisel client with reverse remotes, or chisel server in reverse mode"
    strings:
        $c1 = /chisel\s+client\s[^\n]{0,200}\sR:/
        $c2 = /chisel\s+server\s[^\n]{0,200}--reverse/
        $c3 = /chisel\s+client\s[^\n]{0,200}\ssocks\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule tunnel_ngrok_elf
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "ngrok agent binary"
    strings:
        $m1 = "golang.ngrok.com"
        $m2 = "github.com/inconshreveable/ngrok"
        $m3 = "ngrok.com/ngrok"
        $a = "authtoken"
    condition:
        uint32(0) == 0x464c457f and filesize < 100MB and any of ($m*) and $a
}

rule tunnel_ngrok_usage
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "ngrok tunnel command (http/tcp/tls PORT, start --all, authtoken)"
    strings:
        $cmd1 = /ngrok\s+(tcp|http|tls)\s+(\d|[\w.-]+:\d|https?:\/\/)/
        $cmd2 = /ngrok\s+(config\s+add-)?authtoken\s+\S{16,}/
        $cmd3 = /ngrok\s+start\s[^\n]{0,200}--all/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and any of ($cmd*)
}

rule tunnel_cloudflared
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "cloudflared binary or tunnel command (configs: tunnel_cloudflared_config)"
    strings:
        $m1 = "github.com/cloudflare/cloudflared"
        $cmd = /cloudflared\s+(--\S+\s+)*tunnel\s[^\n]{0,200}(--url|--token|\brun\b)/
    condition:
        (uint32(0) == 0x464c457f and filesize < 150MB and $m1) or
        (uint32(0) != 0x464c457f and filesize < 1MB and $cmd)
}

rule tunnel_gost
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "gost proxy/tunnel binary or gost listener/forwarder command"
    strings:
        $m1 = "github.com/ginuerzh/gost"
        $m2 = "github.com/go-gost/"
        $cmd1 = /gost\s+(-\S+\s+)*-L[= ]+\S*:\/\//
        $cmd2 = /gost\s+(-\S+\s+)*-F[= ]+\S*:\/\//
        $cmd3 = /gost\s+(-\S+\s+)*-L[= ]+(tcp|udp|rtcp|rudp):\/\//
    condition:
        (uint32(0) == 0x464c457f and filesize < 100MB and any of ($m*)) or
        (uint32(0) != 0x464c457f and filesize < 1MB and any of ($cmd*))
}

rule tunnel_bore
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "bore TCP tunnel binary or 'bore local PORT --to HOST' command"
    strings:
        $m1 = "bore_cli"
        $m2 = "ekzhang/bore"
        $cmd = /bore\s+local\s+\d+\s[^\n]{0,100}--to\s+\S+/
    condition:
        (uint32(0) == 0x464c457f and filesize < 50MB and any of ($m*)) or
        (uint32(0) != 0x464c457f and filesize < 1MB and $cmd)
}

rule tunnel_sshuttle
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "sshuttle VPN-over-SSH command with a remote"
    strings:
        $cmd = /sshuttle\s+(-\S+\s+)*(-r|--remote)[= ]+\S+/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and $cmd
}

rule tunnel_reverse_shell
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Reverse shell (socat exec, bash -i >& /dev/tcp, exec fd<>/dev/tcp, nc -e)"
    strings:
        $socat1 = /socat\s[^\n]{0,200}(exec|system):['"]?[^\n]{0,40}\b(ba|z|da)?sh\b/ nocase
        $socat2 = /socat\s[^\n]{0,100}tcp[46]?(-connect)?:[^\n]{0,100}(exec|system):/ nocase
        $bash1 = /\b(ba|z)?sh\s+-i\s*[>&]+\s*\/dev\/(tcp|udp)\//
        $bash2 = /exec\s+\d+<>\/dev\/(tcp|udp)\//
        $nc = /\b(nc|ncat|netcat)(\.traditional|\.openbsd)?\s[^\n]{0,80}-e\s*\/bin\/(ba|da|z)?sh\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}
