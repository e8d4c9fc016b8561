"""Serve moto, wrapped in the correcting/fault-injecting layer, on one local port.

Why: imds-sweep's Rust integration tests (and the demo) need an AWS endpoint
that starts fast, picks a free port by itself, tells the caller where it is,
and never outlives the caller. Hence the protocol:

* ``python server.py [--host H] [--port P]`` binds (port 0 = OS-chosen), then
  prints exactly one line ``READY http://H:PORT`` to stdout and flushes;
* it serves until SIGTERM or SIGINT, or until its stdin reaches EOF, so a
  test harness that dies (closing the pipe) takes the server down with it.
  ``--ignore-stdin`` disables the EOF rule for a server started with a
  closed or ``/dev/null`` stdin;
* nothing else is written to stdout; werkzeug's request log goes to stderr
  only with ``--verbose``.

``EmulatorServer`` runs the same server on a background thread, for pytest.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

# Allow `python tests/emulator/server.py` from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer import EmulatorLayer  # noqa: E402
from moto.server import MotoRequestHandler  # noqa: E402


def configure_logging(verbose: bool) -> None:
    """Route werkzeug's request log to stderr when verbose, silence it otherwise."""
    logger = logging.getLogger("werkzeug")
    logger.disabled = not verbose
    if verbose and not logger.handlers:
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler(sys.stderr))


def build_server(host: str, port: int, verbose: bool = False) -> tuple[BaseWSGIServer, EmulatorLayer]:
    """Bind a threaded werkzeug server running the layer (not yet serving)."""
    configure_logging(verbose)
    layer = EmulatorLayer(verbose=verbose)
    # MotoRequestHandler keeps headers with underscores, as moto's own server does.
    server = make_server(host, port, layer, threaded=True, request_handler=MotoRequestHandler)
    return server, layer


def url_of(host: str, server: BaseWSGIServer) -> str:
    return f"http://{host}:{server.server_port}"


class EmulatorServer:
    """The emulator on a background thread of the current process (used by pytest)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.server, self.layer = build_server(host, port, verbose)
        self.url = url_of(host, self.server)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "EmulatorServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join()
        self.server.server_close()


def watch_stdin(stop: threading.Event) -> None:
    """Set ``stop`` once stdin reaches EOF (the parent closed the pipe or exited).

    Reads the raw file descriptor: a daemon thread blocked inside the buffered
    ``sys.stdin`` object would make the interpreter abort at exit.
    """
    if sys.stdin is None:  # started with descriptor 0 closed
        stop.set()
        return
    fd = sys.stdin.fileno()
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass  # a broken stdin counts as closed
    stop.set()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--verbose", action="store_true", help="log requests and errors to stderr")
    parser.add_argument(
        "--ignore-stdin", action="store_true", help="keep serving when stdin reaches EOF"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server, _ = build_server(args.host, args.port, args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if not args.ignore_stdin:
        threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()

    # serve_forever runs on a worker thread so that the main thread stays free
    # to receive signals and to call shutdown(), which must not run on the
    # serving thread itself.
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    sys.stdout.write(f"READY {url_of(args.host, server)}\n")
    sys.stdout.flush()

    while not stop.wait(0.5):
        pass
    server.shutdown()
    serving.join()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
