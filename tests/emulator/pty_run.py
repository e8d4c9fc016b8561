"""Run a command whose stdin is a pseudo-terminal, typing scripted input into it.

Why: imds-sweep asks its y/N confirmation only when stdin is a terminal, so
the Rust integration tests cannot answer it through a pipe. This wrapper gives
the command a fresh pty as stdin (stdout and stderr stay inherited, so the
test still captures them as plain pipes), types the given text into the
terminal, keeps draining the terminal's echo so the child never blocks on a
full pty buffer, and exits with the child's exit status (128+N when the child
died from signal N).

    python pty_run.py [--delay SECONDS] [--eof] --input 'y\\n' -- CMD ARGS...

``--input`` understands the escapes \\n \\r \\t \\0 \\\\ and \\xHH. ``--eof``
types the terminal's end-of-file character (Ctrl-D) after the input.
SIGTERM, SIGINT and SIGHUP received by the wrapper are forwarded to the child.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time

_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
EOF_CHAR = b"\x04"


def unescape(text: str) -> bytes:
    """Interpret backslash escapes; unknown escapes are kept literally."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("x") and len(token) == 3:
            return chr(int(token[1:], 16))
        return _SIMPLE_ESCAPES.get(token, match.group(0))

    return _ESCAPE_RE.sub(replace, text).encode("utf-8")


def drain(fd: int) -> None:
    """Read and discard the terminal output (the echo) until the pty closes."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            # EIO: every slave descriptor is closed, i.e. the child has exited.
            return


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="", help="text to type, with backslash escapes")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before typing")
    parser.add_argument("--eof", action="store_true", help="type Ctrl-D after the input")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("missing command after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(args.command, stdin=slave)
    except OSError as exc:
        print(f"pty_run: cannot run {args.command[0]}: {exc}", file=sys.stderr)
        return 127
    finally:
        os.close(slave)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))

    drainer = threading.Thread(target=drain, args=(master,), daemon=True)
    drainer.start()
    if args.delay > 0:
        time.sleep(args.delay)
    try:
        write_all(master, unescape(args.input) + (EOF_CHAR if args.eof else b""))
    except OSError:
        pass  # the child already exited and closed the terminal; its status tells the story

    returncode = child.wait()
    drainer.join(timeout=1.0)
    os.close(master)
    return exit_code(returncode)


if __name__ == "__main__":
    sys.exit(main())
