/*
 * CPU miner binaries: XMRig and its forks, xmr-stak, cpuminer/minerd, cpuminer-opt.
 * Sentinel's own rules, written from the miners' banners, help text, option names,
 * pool-protocol strings and algorithm names. Every rule is ELF-gated and size-gated.
 */

rule miner_xmrig_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "XMRig or an XMRig fork (banner, donate hosts, option names)"
    strings:
        $brand1 = "XMRig" fullword
        $brand2 = "xmrig" fullword
        $brand3 = "xmrigCC" nocase
        $brand4 = "XMRig-MO"
        $brand5 = "moneroocean" nocase
        $donate1 = "donate.xmrig.com"
        $donate2 = "donate.v2.xmrig.com"
        $opt1 = "--donate-level"
        $opt2 = "--randomx-1gb-pages"
        $opt3 = "--cpu-max-threads-hint"
        $opt4 = "--cpu-priority"
        $opt5 = "--randomx-mode"
        $opt6 = "--tls-fingerprint"
        $opt7 = "--rig-id"
        $opt8 = "--nicehash"
        $opt9 = "--huge-pages-jit"
        $opt10 = "--randomx-wrmsr"
        $opt11 = "--randomx-no-rdmsr"
        $opt12 = "--max-cpu-usage"
        $opt13 = "--daemon-poll-interval"
        $opt14 = "--cpu-no-yield"
        $algo1 = "rx/0" fullword
        $algo2 = "cn/r" fullword
        $algo3 = "cryptonight" nocase
        $algo4 = "randomx" nocase
        $algo5 = "argon2/chukwa"
        $algo6 = "rx/wow"
        $algo7 = "cn-heavy"
    condition:
        uint32(0) == 0x464c457f and filesize < 40MB and (
            any of ($donate*) or
            4 of ($opt*) or
            (any of ($brand*) and (2 of ($opt*) or 2 of ($algo*)))
        )
}

rule miner_xmr_stak_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "xmr-stak family CPU/GPU miner (brand, pool config keys)"
    strings:
        $brand1 = "xmr-stak" nocase
        $brand2 = "fireice-uk"
        $key1 = "pool_address"
        $key2 = "wallet_address"
        $key3 = "use_nicehash"
        $key4 = "pool_password"
        $key5 = "pool_weight"
        $key6 = "use_tls"
        $key7 = "tls_fingerprint"
        $key8 = "pool_list"
        $misc1 = "cryptonight" nocase
        $misc2 = "pools.txt"
        $misc3 = "--currency"
    condition:
        uint32(0) == 0x464c457f and filesize < 40MB and (
            (any of ($brand*) and 2 of ($key*, $misc*)) or
            5 of ($key*)
        )
}

rule miner_cpuminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "cpuminer, minerd, cpuminer-multi or cpuminer-opt (brand, stratum protocol)"
    strings:
        $brand1 = "cpuminer" nocase
        $brand2 = "minerd" fullword
        $brand3 = "cpuminer-opt"
        $brand4 = "JayDDee"
        $brand5 = "tpruvot"
        $brand6 = "pooler/cpuminer"
        $proto1 = "mining.subscribe"
        $proto2 = "mining.authorize"
        $proto3 = "mining.submit"
        $proto4 = "mining.notify"
        $proto5 = "mining.set_difficulty"
        $proto6 = "stratum+tcp://"
        $proto7 = "getblocktemplate"
        $algo1 = "sha256d" fullword
        $algo2 = "scrypt" fullword
        $algo3 = "yespower" nocase
        $algo4 = "lyra2" nocase
        $algo5 = "x16r" fullword
        $algo6 = "--algo"
    condition:
        uint32(0) == 0x464c457f and filesize < 20MB and (
            (any of ($brand*) and 2 of ($proto*)) or
            (3 of ($proto*) and 2 of ($algo*))
        )
}

rule miner_stratum_client_elf
{
    meta:
        category = "miner"
        severity = "high"
        description = "ELF speaking the stratum mining protocol (subscribe/authorize/submit)"
    strings:
        $m1 = "mining.subscribe"
        $m2 = "mining.authorize"
        $m3 = "mining.submit"
        $m4 = "mining.notify"
        $m5 = "mining.set_difficulty"
        $m6 = "mining.extranonce.subscribe"
        $x1 = "\"method\":\"login\""
        $x2 = "\"method\":\"submit\""
        $x3 = "keepalived" fullword
        $x4 = "job_id" fullword
        $x5 = "\"blob\""
        $x6 = "\"seed_hash\""
    condition:
        uint32(0) == 0x464c457f and filesize < 100MB and (3 of ($m*) or 4 of ($x*))
}
