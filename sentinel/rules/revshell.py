"""Reverse and bind shells written in one line of text, in the languages they come in.

Each check pairs a way to reach the network (/dev/tcp, a socket API, a network client)
with a way to hand it a shell (stdio duplicated onto it, a shell spawned on it, a pipe or
fifo between them); one without the other (a port probe, a socket library) is not one.
"""

from __future__ import annotations

import re

SHELL = r"(?:/bin/|/usr/bin/)?(?:ba|z|k|da|a|c|tc)?sh\b"
GAP = 64  # characters between two parts of one shell line: every gap is bounded and stays
# on its line, so a crafted text (a 256 KiB line of "nc nc nc ...") costs linear time
_DEV_NET = re.compile(r"/dev/(?:tcp|udp)/")
_SHELL_WORD = re.compile(rf"(?<![\w.-]){SHELL}|\$line\b|\beval\b|\bexec\s+\d+<>")
_TO_DEV_NET = re.compile(r"(?:\d?[<>]{1,2}&?|&>)\s*/dev/(?:tcp|udp)/")
_STDIO_DUP = re.compile(r"\d?[<>]&\s*\d+\b|>&\s*/dev/|\s-[il]\b|<>/dev/")
_FIFO = re.compile(r"\bmk(?:fifo|nod)\b")
_NET_CLIENT = re.compile(
    r"\b(?:nc|ncat|netcat|nc\.traditional|nc\.openbsd|telnet|socat|cryptcat)\b|\bopenssl\s+s_client\b"
)
_PIPE_SHELL = re.compile(rf"\|\s*{SHELL}|{SHELL}[^|;&\n]{{0,{GAP}}}\|")
_TELNET_SANDWICH = re.compile(
    rf"\btelnet\s+\S{{1,{GAP}}}\s+\d+\s*\|\s*{SHELL}[^|\n]{{0,{GAP}}}\|\s*telnet\b"
)
_SSL_PIPE = re.compile(
    rf"\bopenssl\s+s_client\b[^|;\n]{{0,{GAP}}}\|\s*{SHELL}"
    rf"|{SHELL}[^|;\n]{{0,{GAP}}}\|\s*openssl\s+s_client\b"
)
_NC_EXEC = re.compile(
    rf"\b(?:nc|ncat|netcat|nc\.traditional|nc\.openbsd)\b[^|;&\n]{{0,{GAP}}}?\s"
    rf"(?:-[a-z]{{0,16}}[ec]\s*['\"]?\S{{0,{GAP}}}sh\b|--(?:sh-)?exec[=\s])",
    re.I,
)
_SOCAT_EXEC = re.compile(rf"\bsocat\b[^\n]{{0,{GAP}}}\b(?:exec|system):", re.I)
_AWK_INET = re.compile(r"/inet6?/(?:tcp|udp)/\d+/")
_AWK_COPROC = re.compile(r"\|&|getline")
_ZSH = re.compile(rf"\bztcp\b[^\n]{{0,{GAP}}}>&\s*\$REPLY")
# interpreters: a socket API and a shell (or stdio) handed to it
_PY_SOCKET = re.compile(
    rf"\bsocket\.socket\b|\bsocket\(\s*socket\.|\bcreate_connection\b|import\s+socket"
    rf"|\bsocket\b[^\n]{{0,{GAP}}}\.connect\("
)
_PY_SHELL = re.compile(
    rf"\bpty\.spawn\b|\bos\.dup2\b|subprocess\.\w+\(\s*\[?\s*['\"]{SHELL}"
    rf"|\bos\.(?:system|popen|exec\w*)\(\s*['\"]{SHELL}"
)
_PERL = re.compile(r"\buse\s+Socket\b|\bIO::Socket(?:::INET)?\b|\bsocket\s*\(\s*\w+\s*,\s*PF_INET")
_PERL_SHELL = re.compile(
    rf"open\s*\(\s*STD(?:IN|OUT|ERR)\s*,\s*['\"][>+<]*&|->fdopen\b"
    rf"|\bexec\s*\(?\s*['\"]{SHELL}|\bsystem\s*\$_"
)
_PHP = re.compile(r"\b(?:fsockopen|pfsockopen|stream_socket_client|socket_create)\s*\(")
_PHP_SHELL = re.compile(
    rf"\b(?:exec|shell_exec|system|passthru|popen|proc_open)\s*\(|`[^`\n]{{0,{GAP}}}sh\b"
)
_RUBY = re.compile(r"\bTCPSocket\.(?:open|new)\b|-rsocket\b")
_RUBY_SHELL = re.compile(
    rf"\bexec\b[^;\n]{{0,{GAP}}}{SHELL}|\bspawn\b|\bIO\.popen\b|\bsystem\b|\.gets\b"
)
_LUA = re.compile(r"\bsocket\.tcp\s*\(|require\s*\(?\s*['\"]socket['\"]")
_LUA_SHELL = re.compile(r"\bos\.execute\s*\(|\bio\.popen\s*\(")
_NODE = re.compile(r"\bnet\.(?:Socket|connect|createConnection)\b|require\(\s*['\"]net['\"]\s*\)")
_NODE_SHELL = re.compile(rf"child_process|\bspawn\(\s*['\"]{SHELL}")


def reverse_shell(text: str) -> str | None:
    """A description of the reverse or bind shell written in the text, if any (a literal
    word of each kind is looked for first: most texts hold none and cost a few scans)."""
    if ("/dev/tcp/" in text or "/dev/udp/" in text) and _dev_tcp(text):
        return "shell redirected to /dev/tcp"
    if ("mkfifo" in text or "mknod" in text) and (
        _NET_CLIENT.search(text) and _PIPE_SHELL.search(text)
    ):
        return "shell piped through a fifo and a network client"
    if "telnet" in text and _TELNET_SANDWICH.search(text):
        return "shell between two telnet connections"
    if "s_client" in text and _SSL_PIPE.search(text):
        return "shell piped through openssl s_client"
    if ("-e" in text or "-c" in text or "exec" in text) and _NC_EXEC.search(text):
        return "netcat running a shell (-e/-c)"
    if "socat" in text and _SOCAT_EXEC.search(text) and re.search(SHELL, text):
        return "socat running a shell on a connection"
    if "/inet" in text and _AWK_INET.search(text) and _AWK_COPROC.search(text):
        return "awk shell over /inet/tcp"
    if "ztcp" in text and _ZSH.search(text):
        return "zsh ztcp shell"
    return _interpreter_shell(text)


def _dev_tcp(text: str) -> bool:
    return bool(_SHELL_WORD.search(text) and _TO_DEV_NET.search(text) and _STDIO_DUP.search(text))


def _interpreter_shell(text: str) -> str | None:
    """A socket API of an interpreter with a shell or stdio handed to it."""
    py = "socket" in text and ("dup2" in text or "pty" in text or "/bin/" in text)
    if py and _PY_SOCKET.search(text) and _PY_SHELL.search(text):
        return "python socket spawning a shell"
    perl = "Socket" in text and ("STD" in text or "fdopen" in text or "exec" in text)
    if perl and _PERL.search(text) and _PERL_SHELL.search(text):
        return "perl socket with a shell on it"
    ruby = "TCPSocket" in text or "-rsocket" in text
    if ruby and _RUBY.search(text) and _RUBY_SHELL.search(text):
        return "ruby socket with a shell on it"
    lua = "socket" in text and ("os.execute" in text or "io.popen" in text)
    if lua and _LUA.search(text) and _LUA_SHELL.search(text):
        return "lua socket running commands"
    if "sock" in text and _PHP.search(text) and _PHP_SHELL.search(text):
        return "php socket with a shell on it"
    if "child_process" in text and _NODE.search(text) and _NODE_SHELL.search(text):
        return "node socket with a shell on it"
    return None
