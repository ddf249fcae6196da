/*
 * Dropper and launcher scripts: stratum URLs (plain and base64), --donate-level, miners
 * downloaded and run, background mode, killing rival miners, chattr +i, hugepages and
 * MSR tuning for RandomX, miners installed as services. Sentinel's own rules.
 * Non-ELF only (the binary rules cover ELF); the same rules also run on process
 * command lines, so each one must make sense on a single line too.
 */

rule miner_stratum_url
{
    meta:
        category = "miner"
        severity = "high"
        description = "Mining pool URL (stratum over tcp/ssl/tls/udp, or daemon+http)"
    strings:
        $s = /stratum[12]?\+(tcp|ssl|tls|udp)s?:\/\/[A-Za-z0-9.\-\[\]:_]+/ nocase
        $d = /daemon\+https?:\/\/[A-Za-z0-9.\-\[\]:_]+/
    condition:
        uint32(0) != 0x464c457f and any of them
}

rule miner_stratum_url_base64
{
    meta:
        category = "miner"
        severity = "high"
        description = "Base64-encoded stratum URL or miner option (hidden miner launch)"
    strings:
        $b1 = "stratum+tcp://" base64
        $b2 = "stratum+ssl://" base64
        $b3 = "stratum+tls://" base64
        $b4 = "stratum+udp://" base64
        $b5 = "--donate-level" base64
        $b6 = "stratum2+tcp://" base64
    condition:
        uint32(0) != 0x464c457f and any of them
}

rule miner_donate_level_option
{
    meta:
        category = "miner"
        severity = "high"
        description = "XMRig --donate-level option in a script or command line"
    strings:
        $o = /--donate-level[= ]+\d/
    condition:
        uint32(0) != 0x464c457f and $o
}

rule miner_download_and_run
{
    meta:
        category = "miner"
        severity = "high"
        description = "Script that downloads a miner and runs it"
    strings:
        $dl1 = /\b(curl|wget)\s/
        $dl2 = "busybox wget"
        $dl3 = "urllib.request.urlretrieve"
        $dl4 = /\bgit\s+clone\s/
        $run1 = "chmod +x"
        $run2 = "chmod 777"
        $run3 = "chmod 755"
        $run4 = /\|\s*(ba|da|z)?sh\b/
        $run5 = "nohup "
        $run6 = /tar\s+-?x[zJjvf]*/
        $run7 = /chmod\s+([ugoa]*\+[rw]*x|0?[157]{3})\s/
        $run8 = /\btar\s[^\n|;]{0,80}(\s-?[a-zA-Z]*x[a-zA-Z]*\s|--extract)/
        $run9 = /\b(unzip|bsdtar|7z\s+x)\s/
        $m1 = "xmrig" nocase
        $m2 = "xmr-stak" nocase
        $m3 = "minerd" fullword
        $m4 = "cpuminer" nocase
        $m5 = "kinsing" fullword
        $m6 = "kdevtmpfsi" fullword
        $m7 = "moneroocean_miner"
        $m8 = "c3pool_miner"
        $m9 = "xmrig_setup"
        $m10 = "lolMiner" nocase
        $m11 = "nbminer" nocase
        $m12 = "t-rex" fullword nocase
        $m13 = "teamredminer" nocase
        $m14 = "SRBMiner" nocase
        $m15 = "nanominer" nocase
        $m16 = "PhoenixMiner" nocase
        $m17 = /\b(gminer|bzminer|rigel|wildrig|onezerominer|p2pool)\b/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and
        any of ($dl*) and any of ($run*) and any of ($m*)
}

rule miner_background_launch
{
    meta:
        category = "miner"
        severity = "high"
        description = "CPU miner started in background mode (-B/--background) with pool options"
    strings:
        $bg = /(xmrig|xmr-stak|minerd|cpuminer)[^\n]{0,300}\s(-B|--background)(\s|$)/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $bg
}

rule miner_kill_rivals
{
    meta:
        category = "miner"
        severity = "high"
        description = "Script that kills rival miners by name (cryptojacking turf war)"
    strings:
        $k1 = /(pkill|killall)\s+(-9\s+)?(-f\s+)?["']?[^\n]{0,40}(xmrig|xmr-stak|kinsing|kdevtmpfsi|minerd|cpuminer|kthreaddk|ksoftriqd|kworkerr|nanominer|ethminer|t-rex|nbminer|lolminer|srbminer|cryptonight|stratum)/ nocase
        $k2 = /grep[^\n]{0,60}(xmrig|xmr-stak|kinsing|kdevtmpfsi|minerd|cpuminer|kthreaddk|ksoftriqd|kworkerr|nanominer|ethminer|nbminer|lolminer|srbminer|cryptonight|stratum)[^\n]{0,120}kill/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and (#k1 + #k2) >= 2
}

rule evasion_chattr_immutable
{
    meta:
        category = "evasion"
        severity = "high"
        description = "chattr +i/-i on miner, cron, SSH key or temp-dir files (locks persistence)"
    strings:
        $chattr = /chattr\s+[-+][ia]+\s/
        $t1 = ".ssh/authorized_keys"
        $t2 = "/etc/cron"
        $t3 = "/var/spool/cron"
        $t4 = "/etc/ld.so.preload"
        $t5 = "/tmp/"
        $t6 = "/dev/shm"
        $t7 = "/var/tmp"
        $t8 = "xmrig" nocase
        $t9 = "stratum+" nocase
        $t10 = "--donate-level"
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $chattr and any of ($t*)
}

rule miner_msr_tuning
{
    meta:
        category = "miner"
        severity = "medium"
        description = "MSR writes used to speed up RandomX mining (modprobe msr allow_writes, wrmsr)"
    strings:
        $allow = "allow_writes=on"
        $wrmsr = /wrmsr\s+(-a\s+)?0x(1a4|c0011020|c0011021|c0011022|c001102b|1a0)\b/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of them
}

rule miner_randomx_host_tuning
{
    meta:
        category = "miner"
        severity = "high"
        description = "MSR writes together with hugepage reservation (RandomX miner setup)"
    strings:
        $hp1 = "vm.nr_hugepages"
        $hp2 = "/proc/sys/vm/nr_hugepages"
        $hp3 = "1gb-pages"
    condition:
        miner_msr_tuning and any of them
}

rule persistence_miner_systemd_unit
{
    meta:
        category = "persistence"
        severity = "high"
        description = "systemd unit whose ExecStart runs a miner"
    strings:
        $svc = "[Service]"
        $exec = /ExecStart\s*=[^\n]{0,200}(xmrig|xmr-stak|minerd|cpuminer|t-rex|lolminer|nbminer|phoenixminer|teamredminer|ethminer|nanominer|srbminer|stratum\+|--donate-level)/ nocase
    condition:
        uint32(0) != 0x464c457f and filesize < 256KB and $svc and $exec
}
