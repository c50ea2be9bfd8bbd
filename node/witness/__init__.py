"""The witness daemon (``shadowledger witness run``): a C2SP tlog-witness for one network.

``store`` keeps what it cosigned (durably, checked and updated atomically), ``server``
answers add-checkpoint over HTTP with the pure decision of ``ledger.witness``, ``alarms``
writes split-view evidence, ``config`` reads ``witness.toml``. See docs/WITNESS.md.
"""
