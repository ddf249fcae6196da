/*
 * GPU miner binaries and their launch scripts: T-Rex, lolMiner, NBMiner, PhoenixMiner,
 * GMiner, TeamRedMiner, ethminer, nanominer, SRBMiner (and a few more brands).
 * Sentinel's own rules. A binary needs its brand plus two words of mining vocabulary.
 * Binaries are ELF-gated and size-gated (GPU miners bundle kernels, so the cap is wider).
 */

private rule gpu_mining_vocabulary
{
    strings:
        $v1 = "stratum+tcp" nocase
        $v2 = "stratum+ssl" nocase
        $v3 = "stratum1+tcp" nocase
        $v4 = "ethash" fullword nocase
        $v5 = "etchash" fullword nocase
        $v6 = "kawpow" fullword nocase
        $v7 = "autolykos" nocase
        $v8 = "octopus" fullword nocase
        $v9 = "kheavyhash" nocase
        $v10 = "firopow" nocase
        $v11 = "progpow" nocase
        $v12 = "beamhash" nocase
        $v13 = "equihash" nocase
        $v14 = "mining.subscribe"
        $v15 = "eth_submitLogin"
        $v16 = "eth_submitWork"
        $v17 = "eth_getWork"
        $v18 = "eth_submitHashrate"
        $v19 = "DAG generated" nocase
        $v20 = "Shares accepted" nocase
        $v21 = "cuckatoo" nocase
        $v22 = "zelhash" nocase
    condition:
        2 of them
}

private rule gpu_miner_elf_shape
{
    condition:
        uint32(0) == 0x464c457f and filesize < 300MB and gpu_mining_vocabulary
}

rule miner_gpu_trex_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "T-Rex NVIDIA GPU miner"
    strings:
        $b1 = "T-Rex" fullword
        $b2 = "t-rex" fullword
        $b3 = "trex-miner" nocase
    condition:
        gpu_miner_elf_shape and any of them
}

rule miner_gpu_lolminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "lolMiner GPU miner"
    strings:
        $b1 = "lolMiner" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_nbminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "NBMiner GPU miner"
    strings:
        $b1 = "NBMiner" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_phoenixminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "PhoenixMiner GPU miner"
    strings:
        $b1 = "PhoenixMiner" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_gminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "GMiner GPU miner"
    strings:
        $b1 = "GMiner" fullword
        $b2 = "gminer" fullword
    condition:
        gpu_miner_elf_shape and any of them
}

rule miner_gpu_teamredminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "TeamRedMiner AMD GPU miner"
    strings:
        $b1 = "teamredminer" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_ethminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "ethminer GPU miner"
    strings:
        $b1 = "ethminer" nocase
        $b2 = "libethcore"
    condition:
        gpu_miner_elf_shape and any of them
}

rule miner_gpu_nanominer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "nanominer GPU/CPU miner"
    strings:
        $b1 = "nanominer" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_srbminer_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "SRBMiner-MULTI GPU/CPU miner"
    strings:
        $b1 = "SRBMiner" nocase
    condition:
        gpu_miner_elf_shape and $b1
}

rule miner_gpu_other_elf
{
    meta:
        category = "miner"
        severity = "critical"
        description = "Other GPU miner brands (ccminer, Claymore, Bminer, WildRig, miniZ, CryptoDredge)"
    strings:
        $b1 = "ccminer" nocase
        $b2 = "Claymore" nocase
        $b3 = "Bminer" fullword
        $b4 = "WildRig" nocase
        $b5 = "miniZ" fullword
        $b6 = "CryptoDredge" nocase
    condition:
        gpu_miner_elf_shape and any of them
}

rule miner_gpu_launch_script
{
    meta:
        category = "miner"
        severity = "high"
        description = "Script that launches a GPU miner with pool and wallet options"
    strings:
        $exe1 = "t-rex" fullword nocase
        $exe2 = "lolMiner" fullword nocase
        $exe3 = "nbminer" fullword nocase
        $exe4 = "PhoenixMiner" fullword nocase
        $exe5 = "gminer" fullword nocase
        $exe6 = "teamredminer" fullword nocase
        $exe7 = "ethminer" fullword nocase
        $exe8 = "nanominer" fullword nocase
        $exe9 = "SRBMiner-MULTI" fullword nocase
        $exe10 = "ccminer" fullword nocase
        $opt1 = /\s--?pool[ =]/
        $opt2 = /\s--?wal(let)?[ =]/
        $opt3 = /\s--user[ =]/
        $opt4 = /\s--server[ =]/
        $opt5 = /\s--?algo(rithm)?[ =]/
        $opt6 = /\s-o[ =]?stratum/ nocase
        $opt7 = /\s-P[ =]?stratum/ nocase
        $opt8 = /\s--?coin[ =]/
        $opt9 = /\s-u[ =][0-9A-Za-z]{20,}/
        $opt10 = /\s--?worker[ =]/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of ($exe*) and 2 of ($opt*)
}
