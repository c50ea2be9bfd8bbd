"""Pure ledger core: records, RFC 9162 Merkle tree, blocks, C2SP notes, receipts, LMDB store.

Nothing here opens a socket, reads the clock or draws randomness by itself.
"""
