from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("envelope", "envelopes", "trusted_size")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    trusted_size: int
    def __init__(self, envelope: _Optional[bytes] = ..., envelopes: _Optional[_Iterable[bytes]] = ..., trusted_size: _Optional[int] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("record_id", "index", "checkpoint", "height", "placements", "consistency_from", "consistency_proof")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FROM_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PROOF_FIELD_NUMBER: _ClassVar[int]
    record_id: bytes
    index: int
    checkpoint: bytes
    height: int
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    consistency_from: int
    consistency_proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, record_id: _Optional[bytes] = ..., index: _Optional[int] = ..., checkpoint: _Optional[bytes] = ..., height: _Optional[int] = ..., placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ..., consistency_from: _Optional[int] = ..., consistency_proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("record_id", "index", "height", "status", "error")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    record_id: bytes
    index: int
    height: int
    status: int
    error: str
    def __init__(self, record_id: _Optional[bytes] = ..., index: _Optional[int] = ..., height: _Optional[int] = ..., status: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("index", "record_id", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    record_id: bytes
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., record_id: _Optional[bytes] = ..., tree_size: _Optional[int] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("index", "envelope")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    index: int
    envelope: bytes
    def __init__(self, index: _Optional[int] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class ReceiptResponse(_message.Message):
    __slots__ = ("index", "envelope", "tlog_proof")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    TLOG_PROOF_FIELD_NUMBER: _ClassVar[int]
    index: int
    envelope: bytes
    tlog_proof: bytes
    def __init__(self, index: _Optional[int] = ..., envelope: _Optional[bytes] = ..., tlog_proof: _Optional[bytes] = ...) -> None: ...

class ConsistencyRequest(_message.Message):
    __slots__ = ("size1", "size2")
    SIZE1_FIELD_NUMBER: _ClassVar[int]
    SIZE2_FIELD_NUMBER: _ClassVar[int]
    size1: int
    size2: int
    def __init__(self, size1: _Optional[int] = ..., size2: _Optional[int] = ...) -> None: ...

class ConsistencyResponse(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("tree_size",)
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    def __init__(self, tree_size: _Optional[int] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("note", "tree_size")
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    note: bytes
    tree_size: int
    def __init__(self, note: _Optional[bytes] = ..., tree_size: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("from_index",)
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    from_index: int
    def __init__(self, from_index: _Optional[int] = ...) -> None: ...

class CommittedRecord(_message.Message):
    __slots__ = ("index", "envelope", "height")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    index: int
    envelope: bytes
    height: int
    def __init__(self, index: _Optional[int] = ..., envelope: _Optional[bytes] = ..., height: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node", "role", "height", "tree_size", "root", "mempool_records", "connected_peers")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    MEMPOOL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PEERS_FIELD_NUMBER: _ClassVar[int]
    node: str
    role: str
    height: int
    tree_size: int
    root: bytes
    mempool_records: int
    connected_peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node: _Optional[str] = ..., role: _Optional[str] = ..., height: _Optional[int] = ..., tree_size: _Optional[int] = ..., root: _Optional[bytes] = ..., mempool_records: _Optional[int] = ..., connected_peers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAgreementsRequest(_message.Message):
    __slots__ = ("agency",)
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    agency: str
    def __init__(self, agency: _Optional[str] = ...) -> None: ...

class AgreementInfo(_message.Message):
    __slots__ = ("agreement_id", "provider", "recipient", "datasets", "purpose", "legal_basis", "valid_from_ms", "valid_until_ms", "revoked", "revoked_at_ms", "status")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    agreement_id: bytes
    provider: str
    recipient: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    legal_basis: str
    valid_from_ms: int
    valid_until_ms: int
    revoked: bool
    revoked_at_ms: int
    status: str
    def __init__(self, agreement_id: _Optional[bytes] = ..., provider: _Optional[str] = ..., recipient: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., legal_basis: _Optional[str] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., revoked_at_ms: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...

class ListAgreementsResponse(_message.Message):
    __slots__ = ("agreements", "height", "time_ms")
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    agreements: _containers.RepeatedCompositeFieldContainer[AgreementInfo]
    height: int
    time_ms: int
    def __init__(self, agreements: _Optional[_Iterable[_Union[AgreementInfo, _Mapping]]] = ..., height: _Optional[int] = ..., time_ms: _Optional[int] = ...) -> None: ...

class GovernanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProposalInfo(_message.Message):
    __slots__ = ("proposal_id", "author", "membership", "base", "expires_ms", "summary", "approvers", "approvals_needed")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    proposal_id: bytes
    author: str
    membership: bytes
    base: bytes
    expires_ms: int
    summary: str
    approvers: _containers.RepeatedScalarFieldContainer[str]
    approvals_needed: int
    def __init__(self, proposal_id: _Optional[bytes] = ..., author: _Optional[str] = ..., membership: _Optional[bytes] = ..., base: _Optional[bytes] = ..., expires_ms: _Optional[int] = ..., summary: _Optional[str] = ..., approvers: _Optional[_Iterable[str]] = ..., approvals_needed: _Optional[int] = ...) -> None: ...

class TransitionInfo(_message.Message):
    __slots__ = ("number", "from_height", "tree_size", "membership", "proposal_id", "approval_ids", "approvers", "summary")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_IDS_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    number: int
    from_height: int
    tree_size: int
    membership: bytes
    proposal_id: bytes
    approval_ids: _containers.RepeatedScalarFieldContainer[bytes]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    def __init__(self, number: _Optional[int] = ..., from_height: _Optional[int] = ..., tree_size: _Optional[int] = ..., membership: _Optional[bytes] = ..., proposal_id: _Optional[bytes] = ..., approval_ids: _Optional[_Iterable[bytes]] = ..., approvers: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ...) -> None: ...

class GovernanceResponse(_message.Message):
    __slots__ = ("membership", "membership_hash", "transitions", "pending", "height")
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_HASH_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    membership: bytes
    membership_hash: bytes
    transitions: _containers.RepeatedCompositeFieldContainer[TransitionInfo]
    pending: _containers.RepeatedCompositeFieldContainer[ProposalInfo]
    height: int
    def __init__(self, membership: _Optional[bytes] = ..., membership_hash: _Optional[bytes] = ..., transitions: _Optional[_Iterable[_Union[TransitionInfo, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[ProposalInfo, _Mapping]]] = ..., height: _Optional[int] = ...) -> None: ...

class MembershipChainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MembershipChainResponse(_message.Message):
    __slots__ = ("chain", "height")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    chain: bytes
    height: int
    def __init__(self, chain: _Optional[bytes] = ..., height: _Optional[int] = ...) -> None: ...

class PeerMessage(_message.Message):
    __slots__ = ("proposal", "vote", "records", "checkpoint_signature", "block_request", "block", "commit", "hello")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    proposal: ProposalMessage
    vote: bytes
    records: RecordBatch
    checkpoint_signature: CheckpointSignature
    block_request: BlockRequest
    block: BlockMessage
    commit: CommittedBlock
    hello: Hello
    def __init__(self, proposal: _Optional[_Union[ProposalMessage, _Mapping]] = ..., vote: _Optional[bytes] = ..., records: _Optional[_Union[RecordBatch, _Mapping]] = ..., checkpoint_signature: _Optional[_Union[CheckpointSignature, _Mapping]] = ..., block_request: _Optional[_Union[BlockRequest, _Mapping]] = ..., block: _Optional[_Union[BlockMessage, _Mapping]] = ..., commit: _Optional[_Union[CommittedBlock, _Mapping]] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ...) -> None: ...

class ProposalMessage(_message.Message):
    __slots__ = ("proposal", "block")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    proposal: bytes
    block: bytes
    def __init__(self, proposal: _Optional[bytes] = ..., block: _Optional[bytes] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CheckpointSignature(_message.Message):
    __slots__ = ("tree_size", "signature_line")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_LINE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    signature_line: str
    def __init__(self, tree_size: _Optional[int] = ..., signature_line: _Optional[str] = ...) -> None: ...

class BlockRequest(_message.Message):
    __slots__ = ("height", "block_id")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    height: int
    block_id: bytes
    def __init__(self, height: _Optional[int] = ..., block_id: _Optional[bytes] = ...) -> None: ...

class BlockMessage(_message.Message):
    __slots__ = ("height", "block")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    height: int
    block: bytes
    def __init__(self, height: _Optional[int] = ..., block: _Optional[bytes] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node", "height")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    node: str
    height: int
    def __init__(self, node: _Optional[str] = ..., height: _Optional[int] = ...) -> None: ...

class GossipAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BlocksRequest(_message.Message):
    __slots__ = ("from_height", "to_height", "follow")
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TO_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    from_height: int
    to_height: int
    follow: bool
    def __init__(self, from_height: _Optional[int] = ..., to_height: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class CommittedBlock(_message.Message):
    __slots__ = ("block", "certificate", "checkpoint")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    block: bytes
    certificate: bytes
    checkpoint: bytes
    def __init__(self, block: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("event_id", "sealed")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    event_id: bytes
    sealed: bytes
    def __init__(self, event_id: _Optional[bytes] = ..., sealed: _Optional[bytes] = ...) -> None: ...

class DeliverResponse(_message.Message):
    __slots__ = ("event_index", "stored_bytes")
    EVENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    event_index: int
    stored_bytes: int
    def __init__(self, event_index: _Optional[int] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class DeliveryRef(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: bytes
    def __init__(self, event_id: _Optional[bytes] = ...) -> None: ...

class DeliveryResponse(_message.Message):
    __slots__ = ("event_index", "sealed", "provider")
    EVENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    event_index: int
    sealed: bytes
    provider: str
    def __init__(self, event_index: _Optional[int] = ..., sealed: _Optional[bytes] = ..., provider: _Optional[str] = ...) -> None: ...

class EraseResponse(_message.Message):
    __slots__ = ("erased_bytes",)
    ERASED_BYTES_FIELD_NUMBER: _ClassVar[int]
    erased_bytes: int
    def __init__(self, erased_bytes: _Optional[int] = ...) -> None: ...

class SubjectEventsRequest(_message.Message):
    __slots__ = ("subject_pseudonym", "from_index", "limit")
    SUBJECT_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    subject_pseudonym: bytes
    from_index: int
    limit: int
    def __init__(self, subject_pseudonym: _Optional[bytes] = ..., from_index: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class SubjectEventsResponse(_message.Message):
    __slots__ = ("indices", "tree_size", "more")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    tree_size: int
    more: bool
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., tree_size: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...
