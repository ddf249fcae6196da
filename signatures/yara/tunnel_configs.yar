/*
 * Tunnel configs, in all the key spellings their tools accept: cloudflared config.yml and
 * credentials, gost v2 JSON and v3 YAML/JSON, frp server (frps) and client (frpc) in INI,
 * TOML, YAML and JSON, and ngrok.yml with tunnels or endpoints. A config alone does not run,
 * so each is medium; the command that runs it is judged by the tunnel.* rules.
 * Sentinel's own rules.
 */

rule tunnel_cloudflared_config
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "cloudflared tunnel config (tunnel:, credentials-file:, ingress: with service:, url:) or tunnel credentials JSON"
    strings:
        $tunnel = /\btunnel\s*:\s*["']?[\w.-]{3,}/
        $cred = /\bcredentials[-_]file\s*:\s*\S+/
        $ingress = /\bingress\s*:/
        $service = /\bservice\s*:\s*["']?(https?|tcp|ssh|rdp|unix|unix\+tls|smb|socks5|bastion|hello_world|http_status:\d{3})\b/
        $catchall = /\bservice\s*:\s*["']?http_status:\d{3}/
        $url = /\burl\s*:\s*["']?(https?|tcp|ssh|unix):\/\/(localhost|127\.|\[::1\]|0\.0\.0\.0|[\w.-]+:\d)/
        $origin = /\boriginRequest\s*:/
        $json1 = "\"TunnelSecret\""
        $json2 = "\"TunnelID\""
        $json3 = "\"AccountTag\""
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and (
            ($tunnel and ($cred or $url or ($ingress and $service))) or
            ($ingress and ($catchall or ($service and $origin))) or
            all of ($json*)
        )
}

rule tunnel_gost_config
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "gost proxy/tunnel config: v2 ServeNodes/ChainNodes, or v3 services with handler and listener (and chains, hops, forwarders)"
    strings:
        $v2a = /\bServeNodes"?\s*:/
        $v2b = /\bChainNodes"?\s*:/
        $node = /\b(socks[45]?|relay|rtcp|rudp|tls|mtls|wss?|mwss|kcp|quic|ss|ssu|http2|h2c?|sni|ohttp|otls|obfs4|forward|tcp|udp)(\+[a-z0-9]+)*:\/\//
        $hostport = /"[\w.-]*:\d{1,5}"/  // a v2 node with no scheme (gost reads it as auto)
        $services = /\bservices"?\s*:/
        $handler = /\bhandler"?\s*:/
        $listener = /\blistener"?\s*:/
        $chains = /\bchains"?\s*:/
        $hops = /\bhops"?\s*:/
        $connector = /\bconnector"?\s*:/
        $dialer = /\bdialer"?\s*:/
        $forwarder = /\bforwarder"?\s*:/
        $type = /\btype"?\s*:\s*["']?(rtcp|rudp|relay|socks5|socks4|ss|sni|http2|tunnel|red|redu|tun|tap|sshd)\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and (
            (any of ($v2*) and $node) or
            (all of ($v2*) and $hostport) or
            ($services and $handler and $listener and
             ($type or $chains or $hops or $connector or $dialer or $forwarder))
        )
}

rule tunnel_frps_config
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "frp server config: [common] bind_port (INI) or bindPort = N (frps.toml): this box would accept tunnels"
    strings:
        $common = "[common]"
        $bind = /\bbind_port\s*=\s*\d+/
        $tbind = /\bbindPort\s*=\s*\d+/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and (($common and $bind) or $tbind)
}

rule tunnel_frpc_config
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "frp client config: server_addr with proxied ports (INI), or serverAddr with [[proxies]], proxies: or remotePort (TOML, YAML, JSON)"
    strings:
        $common = "[common]"
        $addr = /\bserver_addr\s*=\s*\S+/
        $rport = /\bremote_port\s*=\s*\d+/
        $lport = /\blocal_port\s*=\s*\d+/
        $type = /\btype\s*=\s*["']?(tcp|udp|stcp|xtcp|sudp|http|https|tcpmux)\b/
        $taddr = /\bserverAddr"?\s*[=:]\s*["']?[\w.:\[\]-]+/
        $proxies = "[[proxies]]"
        $yproxies = /\bproxies"?\s*:/
        $trport = /\bremotePort"?\s*[=:]\s*\d+/
        $tlport = /\blocalPort"?\s*[=:]\s*\d+/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and (
            ($addr and ($common or $rport or $lport or $type)) or
            ($taddr and ($proxies or $yproxies or $trport or $tlport))
        )
}

rule tunnel_ngrok_config
{
    meta:
        category = "tunnel"
        severity = "medium"
        description = "ngrok agent config (ngrok.yml): tunnels with proto and addr, or endpoints with an upstream"
    strings:
        $tunnels = /\btunnels\s*:/
        $proto = /\bproto\s*:\s*["']?(http|tcp|tls)\b/
        $addr = /\baddr\s*:\s*["']?[\w.:\/-]+/
        $endpoints = /\bendpoints\s*:/
        $upstream = /\bupstream\s*:/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and
        (($tunnels and $proto and $addr) or ($endpoints and $upstream))
}
