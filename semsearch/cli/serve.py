"""The ``semsearch serve`` command: the HTTP API and search page over one or more indexes."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys

import click

from .common import NAME_PATTERN, cli, index_path, precision_options, trust_option


@cli.command()
@click.option("--index", "indexes", multiple=True, metavar="NAME_OR_DIR",
              help="An index to serve (repeat for several); served under its folder's name, or NAME=DIR.")
@click.option("--labeler", "labelers", multiple=True, metavar="NAME=PATH",
              help="A labeller to serve: a SetFitLabeler folder or a ThresholdLabeler file.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: a free one, printed at start).")
@click.option("--api-key", envvar="SEMSEARCH_API_KEY", default=None,
              help="Writes need 'Authorization: Bearer KEY'. [env: SEMSEARCH_API_KEY]")
@click.option("--api-key-reads", is_flag=True, help="Reads need the key too.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser requests from this origin (repeat; CORS is off by default).")
@click.option("--insecure", is_flag=True, help="Allow binding a non-loopback address without an API key.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="On loopback, also answer requests whose Host is NAME (a reverse proxy's public name; "
                   "'*': any). [default: localhost, 127.0.0.1, ::1 and --host]")
@click.option("--micro-batch/--no-micro-batch", default=True, show_default=True,
              help="Encode the queries of concurrent requests in one batch.")
@click.option("--batch-wait-ms", default=2.0, show_default=True, type=float,
              help="How long the encoder waits for more requests once the queue is empty.")
@click.option("--max-batch", default=64, show_default=True, type=int, help="Queries per encoder call at most.")
@click.option("--max-body-mb", default=8.0, show_default=True, type=float, help="Largest request body.")
@precision_options(default_help="the index's")
@trust_option
def serve(indexes, labelers, host, port, api_key, api_key_reads, cors_origins, insecure, allow_hosts, micro_batch,
          batch_wait_ms, max_batch, max_body_mb, precision, backend, trust_remote_code):
    """Serve indexes (and labellers) over HTTP: a JSON API, its docs at /docs, a search page at /.

    Models load once at start-up; GET /health answers 200 when they have. SIGTERM (or Ctrl-C) stops
    accepting, finishes the requests in flight and exits 0.
    """
    import uvicorn

    from ..errors import BadInput
    from ..serve.app import create_app

    served = _named(indexes, "--index", lambda value: index_path(value))
    named_labelers = _named(labelers, "--labeler", None)
    if not served and not named_labelers:
        raise BadInput("nothing to serve: give --index (and/or --labeler)")
    for name, path in served.items():
        if not (path / "manifest.json").is_file():
            raise BadInput(f"--index {name}: no semsearch index at {path}")
    if not _loopback(host) and not api_key and not insecure:
        raise BadInput(f"refusing to serve on {host} (not loopback) without --api-key; pass --insecure to do it anyway")
    if api_key_reads and not api_key:
        raise BadInput("--api-key-reads needs --api-key (or $SEMSEARCH_API_KEY)")
    if max_body_mb <= 0:
        raise BadInput(f"--max-body-mb must be positive, got {max_body_mb}")
    app = create_app(served, labelers=named_labelers, api_key=api_key, api_key_reads=api_key_reads,
                     cors_origins=tuple(cors_origins), max_body=int(max_body_mb * 1024 * 1024),
                     micro_batch=micro_batch, batch_wait=batch_wait_ms / 1000, max_batch=max_batch,
                     precision=precision, backend=backend, trust_remote_code=trust_remote_code,
                     allowed_hosts=_allowed_hosts(host, allow_hosts))
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"semsearch: serving {', '.join(served) or 'no indexes'} on http://{shown}:{bound} "
               "(GET /health says when the models are ready)", err=True)
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose,
                            timeout_graceful_shutdown=60)
    # uvicorn finishes the requests in flight on SIGTERM, restores the handler it found and raises the signal
    # again; the handler it finds here makes that a clean exit 0 (Ctrl-C keeps Python's: "interrupted", 130)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.Server(config).run(sockets=[sock])


def _named(values, option: str, to_path) -> dict:
    """``NAME=PATH`` or (for indexes) a name or path whose last part is the name."""
    import re
    from pathlib import Path

    from ..errors import BadInput

    out = {}
    for value in values:
        name, eq, rest = value.partition("=")
        if eq:
            path = Path(rest).expanduser()
        elif to_path is not None:
            path = to_path(value)
            name = path.resolve().name
        else:
            raise BadInput(f"{option} {value!r}: give NAME=PATH")
        if not re.fullmatch(NAME_PATTERN, name):
            raise BadInput(f"{option} {value!r}: invalid name {name!r} (letters, digits, '.', '_', '-')")
        if name in out:
            raise BadInput(f"{option}: the name {name!r} is given twice")
        out[name] = path
    return out


def _allowed_hosts(host: str, extra: tuple[str, ...]) -> tuple[str, ...] | None:
    """The Host names a loopback server answers (DNS rebinding); ``None``: any (not loopback, or ``'*'``)."""
    if not _loopback(host) or "*" in extra:
        return None
    return ("localhost", "127.0.0.1", "::1", host, *extra)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    from ..errors import BadInput

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # a keep-alive client waits ~40 ms (Nagle against delayed ACK) for every answer written in two parts
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
