"""`shadowledger explorer`: the node's explorer pages over a ledger on disk, read-only."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from ledger.errors import UsageError
from node.explorer.server import ExplorerServer
from node.explorer.source import (
    LedgerReader,
    RefreshingLedger,
    open_export_reader,
    open_store_reader,
)
from node.explorer.views import Explorer
from node.logging_setup import configure_logging


def serve_explorer(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C; print the URL first (tests read it)."""
    if (args.dir is None) == (args.data_dir is None):
        raise UsageError("give either an export folder DIR or --data-dir NODE_DATA_DIR")
    if args.genesis is None:
        flag = "DIR" if args.data_dir is None else "--data-dir"
        raise UsageError(f"{flag} needs --genesis (the network's genesis.json)")
    configure_logging("console", "info")
    genesis = Path(args.genesis).read_bytes()
    source = args.dir if args.dir is not None else args.data_dir
    reader: LedgerReader
    if args.dir is not None:
        reader = open_export_reader(Path(args.dir), genesis)
    else:
        reader = open_store_reader(Path(args.data_dir), genesis)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    server = ExplorerServer(Explorer(reader, genesis), args.listen).start()
    try:
        print(f"explorer: {server.url} (read-only view of {source}); Ctrl-C stops",
              flush=True)
        stop.wait()
    finally:
        server.stop()
        if isinstance(reader, RefreshingLedger):
            reader.close()
    return 0
