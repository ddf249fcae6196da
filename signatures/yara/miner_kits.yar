/*
 * Miner kits as found in the wild: launch scripts that build the pool URL from shell
 * variables or pass only variables to short options, xmrig-style pool logins without a
 * URL scheme, minimal miner configs (JSON, YAML, TOML), configs for GPU coins, the
 * install variants (piped to a shell with the wallet as argument, git clone and build;
 * droppers.yar's miner_download_and_run takes the rest), payloads named after kernel threads or hidden in
 * /dev/shm, process hiders (libprocesshider, /etc/ld.so.preload writes, ps/top replaced
 * by grep -v wrappers) and miner-adjacent daemons in systemd units (p2pool, monerod for
 * p2pool, xmrig-proxy). Sentinel's own rules. Text files only (ELF-gated), size-gated.
 */

rule miner_stratum_scheme_variable
{
    meta:
        category = "miner"
        severity = "high"
        description = "Script that builds a stratum URL from shell variables (SCHEME=stratum+tcp ... $SCHEME://$POOL)"
    strings:
        $scheme = /\w+=["']?stratum\d?\+(tcp|ssl|tls|udp)["']?/ nocase
        $join = /\$\{?\w+\}?:\/\/\$\{?\w+/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $scheme and $join
}

rule miner_launch_variables
{
    meta:
        category = "miner"
        severity = "high"
        description = "Miner launched with pool and login given only through variables (-o $POOL -u $WALLET)"
    strings:
        $ou = /\s(-o|--url|--pool)[ =]["']?\$\{?\w+\}?[^\n]{0,160}\s(-u|--user|--wallet)[ =]["']?\$\{?\w+/
        $uo = /\s(-u|--user|--wallet)[ =]["']?\$\{?\w+\}?[^\n]{0,160}\s(-o|--url|--pool)[ =]["']?\$\{?\w+/
        $algo = /\s(-a|--algo)[ =]["']?\$\{?\w+/
        $pool = /(^|[\n;])[ \t]*(export[ \t]+)?\w*POOL\w*=["']?[A-Za-z0-9][A-Za-z0-9.\-]{0,253}:\d{2,5}\b/ nocase
        $wallet = /(^|[\n;])[ \t]*(export[ \t]+)?\w*(WALLET|PAYOUT)\w*=/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and ($ou or $uo) and ($algo or $pool or $wallet)
}

rule miner_pool_login_no_scheme
{
    meta:
        category = "miner"
        severity = "high"
        description = "xmrig-style pool login without a URL scheme (-o host:port ... -u login)"
    strings:
        $ou = /\s(-o|--url|--pool)[ =]["']?[A-Za-z0-9][A-Za-z0-9.\-]{1,253}:\d{2,5}["']?\s[^\n]{0,160}(-u|--user|--wallet)[ =]["']?[^\s"'$-]\S{5,}/
        $uo = /\s(-u|--user|--wallet)[ =]["']?[^\s"'$-]\S{5,}\s[^\n]{0,160}(-o|--url|--pool)[ =]["']?[A-Za-z0-9][A-Za-z0-9.\-]{1,253}:\d{2,5}\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule miner_config_minimal_json
{
    meta:
        category = "miner"
        severity = "high"
        description = "Minimal miner config (JSON): a pools array with a pool host:port and a login or miner key"
    strings:
        $pools = /"pools"\s*:\s*\[\s*\{/
        $url = /"(url|host|pool)"\s*:\s*"(stratum\d?\+\w+:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{0,253}:\d{2,5}"/
        $k1 = /"(user|wallet|login|payout|address)"\s*:\s*"/
        $k2 = /"(cpu|opencl|cuda|randomx|donate-level|algo|coin|rig-id|background|autosave)"\s*:/
    condition:
        uint32(0) != 0x464c457f and filesize < 4MB and $pools and $url and any of ($k*)
}

rule miner_config_minimal_yaml_toml
{
    meta:
        category = "miner"
        severity = "high"
        description = "Minimal miner config (YAML or TOML): pools with a pool host:port and a login"
    strings:
        $ypools = /(^|\n)[ \t]*pools:[ \t]*\n[ \t]*-[ \t]+\w+:/
        $tpools = /(^|\n)[ \t]*\[\[[ \t]*pools[ \t]*\]\]/
        $ipools = /(^|\n)[ \t]*pools[ \t]*=[ \t]*\[[ \t\n]*\{/
        $url = /(^|[\s{,])["']?(url|host|pool)["']?[ \t]*[:=][ \t]*["']?(stratum\d?\+\w+:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{0,253}:\d{2,5}\b/
        $login = /(^|[\s{,])["']?(user|wallet|login|payout|address)["']?[ \t]*[:=][ \t]*["']?\S{6,}/
    condition:
        uint32(0) != 0x464c457f and filesize < 4MB and any of ($ypools, $tpools, $ipools) and $url and $login
}

rule miner_config_coin_wallet
{
    meta:
        category = "miner"
        severity = "high"
        description = "Miner config for a GPU or CPU coin: mining algorithm, pool host:port and a wallet/user/payout"
    strings:
        $algo = /["']?-{0,2}(algo|algorithm|coin|currency)["']?[ \t]*[:= ][ \t]*["']?(ethash|etchash|kawpow|autolykos2?|kheavyhash|karlsenhash|pyrinhash|octopus|firopow|progpow[a-z_]*|equihash[0-9_]*|beamhash(ii|iii)?|zelhash|cuckatoo3[12]|cuckaroo29[a-z]*|blake3|sha512256d|nexapow|dynexsolve|verushash|ghostrider|randomx|rx\/0|cn\/r|ethw|etc|rvn|ergo|erg|kas|kaspa|flux|nexa|neoxa|alph|iron|xmr|monero|zeph|rtm|xna|clore)["']?\b/ nocase
        $wal = /["']?-{0,2}(user|wallet|wal|payout|address|login|account)["']?[ \t]*[:= ][ \t]*["']?[A-Za-z0-9][A-Za-z0-9.:_\-]{19,}/ nocase
        $pool = /["']?-{0,2}(url|pool\d?|server|host|stratum)["']?[ \t]*[:= ][ \t]*["']?(stratum\d?\+\w+:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{0,253}:\d{2,5}\b/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and $algo and $wal and $pool
}

rule miner_pipe_to_shell_wallet
{
    meta:
        category = "miner"
        severity = "high"
        description = "Installer piped to a shell with a wallet argument (curl ... | bash -s WALLET)"
    strings:
        $addr = /\|\s*(sudo\s+)?(ba|da|z)?sh\s+-s\s+(--\s+)?["']?[1-9A-HJ-NP-Za-km-z]{90,}/
        $var = /\|\s*(sudo\s+)?(ba|da|z)?sh\s+-s\s+(--\s+)?["']?\$\{?\w*(WALLET|ADDR|ADDRESS|USER|PAYOUT)\w*/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule miner_clone_and_build
{
    meta:
        category = "miner"
        severity = "high"
        description = "git clone and build of a miner (an xmrig-like tree: its CMake options or name)"
    strings:
        $clone = /git\s+clone\s+[^\n]{0,200}/
        $build = /\b(cmake\s|make(\s+-j\S*)?(\s|$)|ninja\s)/
        $name = /git\s+clone\s+\S*(xmrig|xmr-stak|cpuminer|ccminer|miner|p2pool)\S*/ nocase
        $opt1 = "-DWITH_HWLOC"
        $opt2 = "-DWITH_RANDOMX"
        $opt3 = "-DWITH_MSR"
        $opt4 = "-DWITH_CN_"
        $opt5 = "-DXMRIG_DEPS"
        $opt6 = "-DWITH_ARGON2"
        $opt7 = "-DWITH_KAWPOW"
        $opt8 = "-DWITH_GHOSTRIDER"
        $opt9 = "scripts/build_deps.sh"
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $clone and $build and ($name or any of ($opt*))
}

rule miner_source_tree_cmake
{
    meta:
        category = "miner"
        severity = "high"
        description = "CMake project of an xmrig-like miner (project name or its algorithm options)"
    strings:
        $proj = /project\s*\(\s*(xmrig|xmr-stak|cpuminer|xmrigcc|xmrig-proxy|p2pool)\b/ nocase
        $o1 = /option\s*\(\s*WITH_RANDOMX\b/
        $o2 = /option\s*\(\s*WITH_CN_(LITE|HEAVY|PICO|FEMTO)\b/
        $o3 = /option\s*\(\s*WITH_ARGON2\b/
        $o4 = /option\s*\(\s*WITH_KAWPOW\b/
        $o5 = /option\s*\(\s*WITH_GHOSTRIDER\b/
        $o6 = /option\s*\(\s*WITH_MSR\b/
        $o7 = /option\s*\(\s*WITH_ASTROBWT\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and ($proj or 2 of ($o*))
}

rule miner_fetch_kthread_name
{
    meta:
        category = "miner"
        severity = "high"
        description = "Payload downloaded or started under a kernel-thread name (kswapd0, kthreadd., kworker)"
    strings:
        $dl = /\b(curl|wget|tftp|scp)\s/
        $name = /[\/\s"'](kswapd\d|kthreadd[\w.]*|kworker[\w\/:.+-]*|ksoftirqd\d*|kdevtmpfsi|migration\/\d+|watchdogd|kauditd|khugepaged|rcu_sched)(["'\s;&|]|$)/
        $path = /(\/|-O\s*|-o\s*)\.?(kswapd\d|kthreadd\.?[\w.]*|kworker[\w.:+-]*|ksoftirqd\d*|kdevtmpfsi|watchdogd|kauditd|khugepaged)(["'\s;&|]|$)/
        $run1 = /chmod\s+([ugoa]*\+[rw]*x|0?[157]{3})/
        $run2 = /\bnohup\s/
        $run3 = /(^|[\s;&|])\.?\/[\w.\/-]*(kswapd\d|kthreadd[\w.]*|kworker[\w.:+-]*|ksoftirqd\d*|kdevtmpfsi)\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $dl and $name and $path and any of ($run*)
}

rule evasion_fetch_hidden_shm
{
    meta:
        category = "evasion"
        severity = "high"
        description = "Payload downloaded into a hidden directory of /dev/shm (or /tmp, /var/tmp) and made executable"
    strings:
        $dl = /\b(curl|wget)\s[^\n]{0,200}(\/dev\/shm|\/tmp|\/var\/tmp)\/\.[\w.\-]+/
        $cd = /\bcd\s+["']?(\/dev\/shm|\/tmp|\/var\/tmp)\/\.[\w.\-]+/
        $get = /\b(curl|wget)\s/
        $run = /chmod\s+([ugoa]*\+[rw]*x|0?[157]{3})[^\n]{0,120}(\/dev\/shm|\/tmp|\/var\/tmp)\/\.[\w.\-]+|chmod\s+([ugoa]*\+[rw]*x|0?[157]{3})\s/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and ($dl or ($cd and $get)) and $run
}

rule evasion_process_hider_source
{
    meta:
        category = "evasion"
        severity = "high"
        description = "Process hider (libprocesshider-style readdir hook) source or library"
    strings:
        $dlsym = /dlsym\s*\(\s*RTLD_NEXT\s*,\s*"readdir(64)?"/
        $hook = /struct\s+dirent(64)?\s*\*\s*readdir(64)?\s*\(\s*DIR\s*\*/
        $name1 = "get_process_name"
        $name2 = "process_to_filter"
        $name3 = "get_dir_name"
        $proc1 = "/proc/self/fd/%d"
        $proc2 = "/proc/%s/stat"
        $elf1 = "readdir"
        $elf2 = "dlsym"
    condition:
        (uint32(0) != 0x464c457f and filesize < 1MB and ($dlsym or $hook) and any of ($name*, $proc*)) or
        (uint32(0) == 0x464c457f and filesize < 5MB and $elf1 and $elf2 and 1 of ($name*) and 1 of ($proc*))
}

rule evasion_ld_preload_write
{
    meta:
        category = "evasion"
        severity = "high"
        description = "Script that writes /etc/ld.so.preload (a preloaded library hides processes and files)"
    strings:
        $w1 = /(>>?|\btee\s+(-a\s+)?)\s*["']?\/etc\/ld\.so\.preload\b/
        $w2 = /\b(cp|mv|install|ln\s+-s\w*)\s+[^\n]{1,200}\s["']?\/etc\/ld\.so\.preload\b/
        $w3 = /open\s*\(\s*["']\/etc\/ld\.so\.preload["']\s*,\s*["'][wa]/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule evasion_ps_grep_wrapper
{
    meta:
        category = "evasion"
        severity = "high"
        description = "ps, top, netstat or ss replaced by a wrapper that filters its output with grep -v"
    strings:
        $wrap = /\/(ps|top|htop|pstree|netstat|ss|lsof|pgrep)([.\-_]?(old|orig|original|bak|real|bin|\d))?["']?\s+["']?\$[@*]["']?\s*\|\s*(e?grep\s+-[a-zA-Z]*v|sed\s+["']?\/[^\n]{0,80}\/d)/
        $move = /\bmv\s+(-f\s+)?\/(usr\/)?s?bin\/(ps|top|netstat|ss|lsof|pstree)\s+\/(usr\/)?s?bin\/\S+/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule miner_daemon_systemd_unit
{
    meta:
        category = "miner"
        severity = "high"
        description = "systemd unit for a miner-adjacent daemon (p2pool, monerod for mining, xmrig-proxy)"
    strings:
        $svc = "[Service]"
        $e1 = /ExecStart\s*=[^\n]{0,200}\bp2pool\b/ nocase
        $e2 = /ExecStart\s*=[^\n]{0,200}\bmonerod\b[^\n]{0,400}(--zmq-pub|--start-mining)/
        $e3 = /ExecStart\s*=[^\n]{0,200}\bxmrig[-_]?(proxy|cc|daemon)\b/ nocase
        $e4 = /ExecStart\s*=[^\n]{0,400}\s--(wallet|mining-threads|stratum)[ =]/
    condition:
        uint32(0) != 0x464c457f and filesize < 256KB and $svc and any of ($e*)
}
