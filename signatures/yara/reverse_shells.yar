/*
 * Reverse shells written as whole scripts, in the languages they come in: a socket API
 * of the language with the shell (or the process's stdio) handed to it. One-liners are
 * judged line by line by the text rule tunnel.reverse_shell; these catch the same shells
 * spread over many lines. Sentinel's own rules.
 */

rule revshell_python
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Python reverse shell: a socket whose descriptor becomes the shell's stdio (os.dup2, pty.spawn, subprocess on the socket)"
    strings:
        $sock1 = /socket\.socket\s*\(/
        $sock2 = /socket\.create_connection\s*\(/
        $dup = /os\.dup2\s*\(\s*[\w.]+\.fileno\s*\(\s*\)/
        $pty = /pty\.spawn\s*\(\s*["'](\/usr)?\/bin\/(ba|da|z)?sh["']/
        $sub = /subprocess\.(call|Popen|run|check_call)\s*\(\s*\[\s*["'](\/usr)?\/bin\/(ba|da|z)?sh["']/
        $subio = /stdin\s*=\s*\w+(\.fileno\s*\(\s*\))?\s*,\s*stdout\s*=\s*\w+/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of ($sock*) and
        ($dup or $pty or ($sub and $subio))
}

rule revshell_perl
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Perl reverse shell: a socket opened onto STDIN/STDOUT (open STDIN, '>&S' or fdopen) with a shell or a command loop"
    strings:
        $sock1 = /socket\s*\(\s*\w+\s*,\s*PF_INET/
        $sock2 = "IO::Socket::INET"
        $open = /open\s*\(\s*STD(IN|OUT|ERR)\s*,\s*["'][>+<]*&/
        $fdopen = /->fdopen\s*\(\s*\$\w+/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and any of ($sock*) and ($open or $fdopen)
}

rule revshell_php
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "PHP reverse shell: fsockopen/stream_socket_client with a shell run through exec, proc_open or popen"
    strings:
        $sock = /\b(p?fsockopen|stream_socket_client)\s*\(/
        $exec = /\b(exec|shell_exec|system|passthru|popen|proc_open)\s*\(/
        $sh = /\/bin\/(ba|da|z)?sh\b/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $sock and $exec and $sh
}

rule revshell_ruby
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Ruby reverse shell: a TCPSocket that feeds IO.popen or an exec'd shell"
    strings:
        $sock = /TCPSocket\.(new|open)\s*\(/
        $popen = /IO\.popen\s*\(/
        $gets = /\.gets\b/
        $exec = /\b(exec|spawn)\b[^\n]{0,80}\/bin\/(ba|da|z)?sh/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $sock and (($popen and $gets) or $exec)
}

rule revshell_lua
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Lua reverse shell: a LuaSocket TCP connection whose input runs through os.execute or io.popen"
    strings:
        $tcp = /socket\.tcp\s*\(\s*\)/
        $connect = /:connect\s*\(/
        $exec = /\b(os\.execute|io\.popen)\s*\(/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $tcp and $connect and $exec
}

rule revshell_awk
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "awk reverse shell: gawk's /inet/tcp special file used as a coprocess"
    strings:
        $inet = /\/inet[46]?\/(tcp|udp)\/\d+\//
        $coproc = "|&"
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $inet and $coproc
}

rule revshell_node
{
    meta:
        category = "tunnel"
        severity = "high"
        description = "Node.js reverse shell: a net socket piped into a spawned shell"
    strings:
        $net = /require\s*\(\s*["']net["']\s*\)/
        $cp = "child_process"
        $spawn = /spawn\s*\(\s*["'](\/usr)?\/bin\/(ba|da|z)?sh["']/
        $pipe = /\.pipe\s*\(\s*[\w.]+\.stdin\s*\)/
    condition:
        uint32(0) != 0x464c457f and filesize < 2MB and $net and $cp and $spawn and $pipe
}
