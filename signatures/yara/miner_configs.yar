/*
 * Miner configuration files: the XMRig config.json schema (pools with url/user/pass/
 * algo/coin/rig-id/nicehash/tls, donate-level, randomx, cpu, opencl, cuda), xmr-stak
 * pools.txt, GPU miner JSON configs (T-Rex style), nanominer config.ini and PhoenixMiner
 * config.txt/epools.txt. Sentinel's own rules; text files only, size-gated.
 */

rule miner_config_xmrig_json
{
    meta:
        category = "miner"
        severity = "high"
        description = "XMRig-style miner config.json (pools array with xmrig-specific keys)"
    strings:
        $pools = /"pools"\s*:\s*\[/
        $strong1 = /"donate-level"\s*:\s*\d/
        $strong2 = /"donate-over-proxy"\s*:/
        $strong3 = /"rig-id"\s*:/
        $strong4 = /"nicehash"\s*:\s*(true|false)/
        $strong5 = /"randomx"\s*:\s*\{/
        $strong6 = /"max-threads-hint"\s*:/
        $strong7 = /"1gb-pages"\s*:/
        $strong8 = /"huge-pages-jit"\s*:/
        $strong9 = /"self-select"\s*:/
        $strong10 = /"tls-fingerprint"\s*:/
        $strong11 = /"rdmsr"\s*:/
        $strong12 = /"wrmsr"\s*:/
        $pool1 = /"url"\s*:\s*"/
        $pool2 = /"user"\s*:\s*"/
        $pool3 = /"pass"\s*:\s*"/
        $pool4 = /"algo"\s*:\s*("|null)/
        $pool5 = /"coin"\s*:\s*("|null)/
        $pool6 = /"keepalive"\s*:\s*(true|false)/
        $pool7 = /"tls"\s*:\s*(true|false)/
        $section1 = /"cpu"\s*:\s*\{/
        $section2 = /"opencl"\s*:\s*\{/
        $section3 = /"cuda"\s*:\s*\{/
    condition:
        uint32(0) != 0x464c457f and filesize < 4MB and $pools and 2 of ($pool*) and (
            2 of ($strong*) or
            (1 of ($strong*) and 1 of ($section*))
        )
}

rule miner_config_xmr_stak
{
    meta:
        category = "miner"
        severity = "high"
        description = "xmr-stak pools.txt / config (pool_list with pool_address and wallet_address)"
    strings:
        $list = /"pool_list"\s*:\s*\[/
        $k1 = /"pool_address"\s*:\s*"/
        $k2 = /"wallet_address"\s*:\s*"/
        $k3 = /"pool_password"\s*:/
        $k4 = /"use_nicehash"\s*:/
        $k5 = /"use_tls"\s*:/
        $k6 = /"pool_weight"\s*:/
        $k7 = /"currency"\s*:\s*"/
        $k8 = /"rig_id"\s*:/
    condition:
        uint32(0) != 0x464c457f and filesize < 4MB and $list and $k1 and $k2 and 1 of ($k3, $k4, $k5, $k6, $k7, $k8)
}

rule miner_config_gpu_json
{
    meta:
        category = "miner"
        severity = "high"
        description = "GPU miner JSON config (T-Rex style: pools, algo, api-bind, intensity)"
    strings:
        $pools = /"pools"\s*:\s*\[/
        $user = /"(user|wallet)"\s*:\s*"/
        $algo = /"(algo|coin)"\s*:\s*"(ethash|etchash|kawpow|autolykos2?|octopus|firopow|kheavyhash|equihash[0-9_]*|beamhashiii|cuckatoo32|zelhash|blake3|progpow[a-z_]*|mtp|x16rv2|sha512256d|rx\/0|randomx)"/ nocase
        $k1 = /"api-bind-http"\s*:/
        $k2 = /"api-bind-telnet"\s*:/
        $k3 = /"gpu-report-interval"\s*:/
        $k4 = /"pci-indexing"\s*:/
        $k5 = /"lhr-tune"\s*:/
        $k6 = /"dag-build-mode"\s*:/
        $k7 = /"intensity"\s*:/
        $k8 = /"worker"\s*:\s*"/
    condition:
        uint32(0) != 0x464c457f and filesize < 4MB and $pools and $user and ($algo or 2 of ($k*))
}

rule miner_config_nanominer_ini
{
    meta:
        category = "miner"
        severity = "high"
        description = "nanominer-style config.ini (algorithm section with wallet and pool)"
    strings:
        $section = /\[(RandomX|Ethash|Etchash|Kawpow|Autolykos|Octopus|Verushash|Cuckaroo30|Zil|Karlsenhash|Kaspa)\]/ nocase
        $wallet = /\nwallet\s*=\s*\S{20,}/
        $pool = /\npool\d\s*=\s*\S+:\d{2,5}/
        $rig = /\nrigName\s*=/
        $coin = /\ncoin\s*=/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and $section and $wallet and 1 of ($pool, $rig, $coin)
}

rule miner_config_phoenix_txt
{
    meta:
        category = "miner"
        severity = "high"
        description = "PhoenixMiner config.txt or epools.txt (pool, wallet, worker options)"
    strings:
        $pool = /(^|\n)-pool2?\s+\S+:\d{2,5}/
        $wal = /(^|\n)-wal\s+\S{20,}/
        $k1 = /(^|\n)-worker\s/
        $k2 = /(^|\n)-coin\s/
        $k3 = /(^|\n)-epsw\s/
        $k4 = /(^|\n)-pass\s/
        $ep1 = /POOL:\s*\S+:\d{2,5},\s*WALLET:\s*\S{20,}/
    condition:
        uint32(0) != 0x464c457f and filesize < 1MB and (($pool and $wal and 1 of ($k*)) or $ep1)
}
