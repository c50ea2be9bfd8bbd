"""`shadowledger explorer`: the node's explorer pages over a ledger on disk, read-only."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from ledger.errors import UsageError
from node.explorer.server import ExplorerServer
from node.explorer.source import open_store_reader
from node.explorer.views import Explorer
from node.logging_setup import configure_logging


def serve_explorer(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C; print the URL first (tests read it)."""
    if (args.dir is None) == (args.data_dir is None):
        raise UsageError("give either an export folder DIR or --data-dir NODE_DATA_DIR")
    if args.dir is not None:
        # The static export reader (ledger/export.py) is built on another branch; it
        # implements node.explorer.source.LedgerReader and plugs in here.
        raise UsageError(
            f"{args.dir}: serving a static export needs `shadowledger export` support,"
            " which this build lacks; use --data-dir with a node's data folder"
        )
    if args.genesis is None:
        raise UsageError("--data-dir needs --genesis (the network's genesis.json)")
    configure_logging("console", "info")
    genesis = Path(args.genesis).read_bytes()
    reader = open_store_reader(Path(args.data_dir), genesis)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    server = ExplorerServer(Explorer(reader, genesis), args.listen).start()
    try:
        print(f"explorer: {server.url} (read-only view of {args.data_dir}); Ctrl-C stops",
              flush=True)
        stop.wait()
    finally:
        server.stop()
        reader.close()
    return 0
