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
  only with ``--verbose``;
* ``--latency-ms N [--jitter-ms M]`` and ``--buckets`` start the server with
  added latency and EC2 request throttling switched on (they are what
  ``POST /_layer/reset`` returns to); seed.py suspends them while seeding.

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
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

# Allow `python tests/emulator/server.py` from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer import (  # noqa: E402
    BucketSettings,
    ConnectionAbort,
    EmulatorLayer,
    LatencySettings,
    StartupSwitches,
)
from moto.server import MotoRequestHandler  # noqa: E402


def configure_logging(verbose: bool) -> None:
    """Route werkzeug's request log to stderr when verbose, silence it otherwise."""
    logger = logging.getLogger("werkzeug")
    logger.disabled = not verbose
    if verbose and not logger.handlers:
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler(sys.stderr))


class LayerRequestHandler(MotoRequestHandler):
    """moto's request handler, plus abortive closes for the layer's connection faults.

    When the layer raises ConnectionAbort (see ``layer.abort_connection``, which
    already set SO_LINGER to 0), werkzeug writes nothing and calls
    ``connection_dropped``. socketserver would then shut the socket down for
    writing before closing it, which sends a FIN ahead of the RST; closing the
    socket here first makes the client see a bare connection reset.
    """

    _aborted = False

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        if isinstance(error, ConnectionAbort):
            self._aborted = True
            self.close_connection = True  # never wait for another request on it
        super().connection_dropped(error, environ)

    def finish(self) -> None:
        super().finish()
        if self._aborted:
            # rfile/wfile are closed now, so this really closes the descriptor (RST).
            # socketserver's own shutdown/close afterwards meet a closed socket and pass.
            self.connection.close()


def build_server(
    host: str, port: int, verbose: bool = False, startup: StartupSwitches = StartupSwitches()
) -> tuple[BaseWSGIServer, EmulatorLayer]:
    """Bind a threaded werkzeug server running the layer (not yet serving)."""
    configure_logging(verbose)
    layer = EmulatorLayer(verbose=verbose, startup=startup)
    # MotoRequestHandler keeps headers with underscores, as moto's own server does.
    server = make_server(host, port, layer, threaded=True, request_handler=LayerRequestHandler)
    return server, layer


def url_of(host: str, server: BaseWSGIServer) -> str:
    return f"http://{host}:{server.server_port}"


class EmulatorServer:
    """The emulator on a background thread of the current process (used by pytest)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
        startup: StartupSwitches = StartupSwitches(),
    ):
        self.server, self.layer = build_server(host, port, verbose, startup)
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
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added latency of every AWS request (ms)"
    )
    parser.add_argument(
        "--jitter-ms", type=float, default=0.0, help="uniform +/- jitter of that latency (ms)"
    )
    parser.add_argument(
        "--buckets", action="store_true", help="throttle EC2 requests with AWS-like token buckets"
    )
    args = parser.parse_args(argv)
    if args.latency_ms < 0 or args.jitter_ms < 0:
        parser.error("--latency-ms and --jitter-ms must not be negative")
    return args


def startup_switches(args: argparse.Namespace) -> StartupSwitches:
    """The latency and throttling the command line asks for."""
    return StartupSwitches(
        latency=LatencySettings(args.latency_ms, args.jitter_ms),
        buckets=BucketSettings(enabled=args.buckets),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server, _ = build_server(args.host, args.port, args.verbose, startup_switches(args))
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
