"""Records, blocks, the hash chain and the LMDB ledger, end to end in one process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import merkle
from ledger.blocks import Block, BlockHeader, ChainVerifier, build_block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import ChainError, CorruptStoreError, FormatError, SignatureError
from ledger.genesis import Agency, Genesis, TrustRoot, Validator, genesis_hash
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.receipts import ConsistencyProof, verify_checkpoint_consistency, verify_receipt
from ledger.records import Envelope, Keyring, sign_record, verify_envelope
from ledger.storage import Storage, StorageConfig
from proto import ledger_pb2

NET = "test.example/ledger"
SEED = iter(range(1, 1_000_000))


def _rand(n: int) -> bytes:
    return next(SEED).to_bytes(4, "big") * (n // 4)


AGENCY = SigningKey.generate("agency-a", _rand)
OTHER = SigningKey.generate("agency-b", _rand)
VALIDATORS = [SigningKey.generate(f"validator-{i}", _rand) for i in range(4)]
GENESIS = Genesis(
    NET,
    tuple(Validator(k.verifier) for k in VALIDATORS),
    (Agency("agency-a", (AGENCY.verifier,)), Agency("agency-b", (OTHER.verifier,))),
)
GENESIS_BYTES = GENESIS.to_bytes()


def _body(i: int, agency: str = "agency-a", network: str = NET) -> ledger_pb2.RecordBody:
    return ledger_pb2.RecordBody(
        network=network,
        agency=agency,
        nonce=i.to_bytes(16, "big"),
        anchor=ledger_pb2.Anchor(source="registry/persons", version=str(i),
                                 commitment=bytes(32)),
    )


def _envelopes(n: int, start: int = 0) -> list[Envelope]:
    return [sign_record(_body(i), AGENCY) for i in range(start, start + n)]


def test_envelope_round_trip_and_verification() -> None:
    env = _envelopes(1)[0]
    again = Envelope.from_bytes(env.to_bytes())
    assert again == env
    record = verify_envelope(again, GENESIS.keyring(), NET)
    assert record.kind == "anchor" and record.signer.name == "agency-a"
    assert env.leaf_hash == merkle.leaf_hash(env.raw)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda e: e[:-1], FormatError, "protobuf|canonical|signature is"),
        (lambda e: e + b"\x08\x01", FormatError, "canonical|protobuf"),
        (lambda e: b"\xff" * 10, FormatError, "protobuf"),
        (lambda e: b"x" * 70_000, FormatError, "over the limit"),
    ],
)
def test_malformed_envelopes_are_refused(
    mutate: Callable[[bytes], bytes], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Envelope.from_bytes(mutate(_envelopes(1)[0].raw))


def test_a_changed_body_byte_breaks_the_signature() -> None:
    env = _envelopes(1)[0]
    msg = ledger_pb2.Envelope.FromString(env.raw)
    body = bytearray(msg.body)
    body[-1] ^= 1
    msg.body = bytes(body)
    bad = Envelope.from_bytes(msg.SerializeToString(deterministic=True))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(bad, GENESIS.keyring(), NET)


def test_unknown_signer_wrong_agency_and_wrong_network_are_refused() -> None:
    stranger = SigningKey.generate("agency-a", _rand)
    with pytest.raises(SignatureError, match="not a known key"):
        verify_envelope(sign_record(_body(1), stranger), GENESIS.keyring(), NET)
    with pytest.raises(SignatureError, match="claims agency"):
        verify_envelope(sign_record(_body(1, agency="agency-a"), OTHER), GENESIS.keyring(), NET)
    with pytest.raises(FormatError, match="network"):
        verify_envelope(sign_record(_body(1, network="x"), AGENCY), GENESIS.keyring(), NET)
    assert len(Keyring()) == 0


def test_block_encoding_round_trips_and_is_canonical() -> None:
    frontier = merkle.Frontier()
    block = build_block(NET, None, b"g" * 32, [e.raw for e in _envelopes(3)], frontier, 5,
                        b"p" * 32)
    assert Block.from_bytes(block.to_bytes()) == block
    assert BlockHeader.from_bytes(block.header.to_bytes()) == block.header
    with pytest.raises(FormatError):
        BlockHeader.from_bytes(block.header.to_bytes() + b"\x00")
    with pytest.raises(FormatError):
        Block.from_bytes(block.to_bytes()[:-1])


def _chain(blocks: int, per_block: int) -> list[Block]:
    frontier, parent, out = merkle.Frontier(), None, []
    for b in range(blocks):
        envs = [e.raw for e in _envelopes(per_block, start=b * per_block)]
        block = build_block(NET, parent, genesis_hash(GENESIS_BYTES), envs, frontier, 1000 + b,
                            VALIDATORS[b % 4].verifier.key_hash)
        out.append(block)
        parent = block.header
    return out


def _checked(env: bytes) -> object:
    return verify_envelope(Envelope.from_bytes(env), GENESIS.keyring(), NET)


def test_chain_verifier_accepts_a_good_chain_and_pinpoints_breaks() -> None:
    chain = _chain(5, 7)
    verifier = ChainVerifier(NET, genesis_hash(GENESIS_BYTES), _checked)
    for block in chain:
        verifier.add(block)
    assert verifier.tree.size == 35
    # A record swapped out of block 3: its root no longer matches.
    bad = list(chain)
    forged = Block(chain[2].header, (chain[2].envelopes[1], chain[2].envelopes[0],
                                     *chain[2].envelopes[2:]))
    bad[2] = forged
    verifier = ChainVerifier(NET, genesis_hash(GENESIS_BYTES), _checked)
    verifier.add(bad[0])
    verifier.add(bad[1])
    with pytest.raises(ChainError, match="block 3 tree root"):
        verifier.add(bad[2])
    # A block skipped: the next one does not link.
    verifier = ChainVerifier(NET, genesis_hash(GENESIS_BYTES), _checked)
    verifier.add(chain[0])
    with pytest.raises(ChainError, match="height 3 follows 1"):
        verifier.add(chain[2])


def _ledger(path: Path) -> tuple[Storage, Ledger]:
    storage = Storage(path, StorageConfig(map_size=1 << 28))
    return storage, Ledger(storage, genesis_hash(GENESIS_BYTES))


def _commit(ledger: Ledger, chain: list[Block]) -> None:
    for block in chain:
        cp = Checkpoint(NET, block.header.tree_size, block.header.tree_root)
        ledger.commit_block(block, b"cert", sign_checkpoint(cp, VALIDATORS[:3]))


def test_ledger_commits_blocks_serves_receipts_and_survives_reopen(tmp_path: Path) -> None:
    chain = _chain(4, 10)
    storage, ledger = _ledger(tmp_path)
    _commit(ledger, chain)
    assert ledger.head.height == 4 and ledger.tree.size == 40
    storage.close()
    storage, ledger = _ledger(tmp_path)  # reopen: same head, same root
    assert ledger.head.tree_size == 40 and ledger.tree.root() == chain[-1].header.tree_root
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_bytes(GENESIS_BYTES)
    trust = TrustRoot.load(genesis_file)
    for index in (0, 17, 39):
        env = ledger.record(index)
        assert ledger.index_of(Envelope.from_bytes(env).record_id) == index
        result = verify_receipt(ledger.receipt(index), env, trust)
        assert result.index == index and result.checkpoint.size == 40
        assert result.record is not None and result.record.kind == "anchor"
        with pytest.raises(Exception, match="does not lead to the given root"):
            verify_receipt(ledger.receipt(index), ledger.record((index + 1) % 40), trust)
    proof = ConsistencyProof(10, 40, tuple(ledger.consistency_proof(10, 40)))
    old, new = verify_checkpoint_consistency(
        ledger.checkpoint(10) or b"", ledger.checkpoint(40) or b"", proof.to_bytes(), trust
    )
    assert (old.size, new.size) == (10, 40)
    storage.close()


def test_ledger_refuses_duplicates_forks_and_bad_roots(tmp_path: Path) -> None:
    chain = _chain(2, 5)
    storage, ledger = _ledger(tmp_path)
    _commit(ledger, chain[:1])
    with pytest.raises(ChainError, match="does not follow"):
        ledger.commit_block(chain[0])
    # Same records again in a well-formed next block: refused as duplicates, nothing written.
    frontier = merkle.Frontier()
    frontier.extend(merkle.leaf_hashes(chain[0].envelopes))
    dup = build_block(NET, chain[0].header, b"", chain[0].envelopes, frontier, 2000, b"p" * 32)
    with pytest.raises(ChainError, match="already on the ledger"):
        ledger.commit_block(dup)
    assert ledger.tree.size == 5 and ledger.tree.root() == chain[0].header.tree_root
    # A header whose root lies about its records.
    h = chain[1].header
    liar = Block(BlockHeader(h.network, h.height, h.prev_hash, h.tree_size, bytes(32),
                             h.time_ms, h.proposer, h.record_count), chain[1].envelopes)
    with pytest.raises(ChainError, match="tree root"):
        ledger.commit_block(liar)
    assert ledger.tree.size == 5
    _commit(ledger, chain[1:])
    assert ledger.head.height == 2
    storage.close()


def test_head_and_tree_disagreement_is_detected_on_open(tmp_path: Path) -> None:
    storage, ledger = _ledger(tmp_path)
    _commit(ledger, _chain(1, 3))
    ledger.tree.append_durably([merkle.leaf_hash(b"sneaked in")])
    storage.close()
    with pytest.raises(CorruptStoreError, match="chain head"):
        _ledger(tmp_path)


def test_trust_from_vkeys_and_genesis_errors(tmp_path: Path) -> None:
    vkeys = tmp_path / "keys"
    vkeys.write_text("# validators\n" + "".join(k.verifier.to_vkey() + "\n" for k in VALIDATORS))
    trust = TrustRoot.load(vkeys)
    assert trust.threshold == 3 and trust.network is None
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(FormatError, match="no validator keys"):
        TrustRoot.load(tmp_path / "empty")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(FormatError, match="genesis format"):
        TrustRoot.load(tmp_path / "bad.json")
    assert os.path.exists(vkeys)
