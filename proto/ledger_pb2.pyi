from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("body", "signer", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signer: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signer: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RecordBody(_message.Message):
    __slots__ = ("network", "agency", "nonce", "created_ms", "sharing_event", "anchor", "agreement", "revocation", "governance", "reconciliation")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    SHARING_EVENT_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    RECONCILIATION_FIELD_NUMBER: _ClassVar[int]
    network: str
    agency: str
    nonce: bytes
    created_ms: int
    sharing_event: SharingEvent
    anchor: Anchor
    agreement: SharingAgreement
    revocation: AgreementRevocation
    governance: Governance
    reconciliation: Reconciliation
    def __init__(self, network: _Optional[str] = ..., agency: _Optional[str] = ..., nonce: _Optional[bytes] = ..., created_ms: _Optional[int] = ..., sharing_event: _Optional[_Union[SharingEvent, _Mapping]] = ..., anchor: _Optional[_Union[Anchor, _Mapping]] = ..., agreement: _Optional[_Union[SharingAgreement, _Mapping]] = ..., revocation: _Optional[_Union[AgreementRevocation, _Mapping]] = ..., governance: _Optional[_Union[Governance, _Mapping]] = ..., reconciliation: _Optional[_Union[Reconciliation, _Mapping]] = ...) -> None: ...

class SharingEvent(_message.Message):
    __slots__ = ("provider", "recipient", "dataset", "purpose", "agreement_id", "subject_pseudonym", "payload_commitment", "payload_size")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    recipient: str
    dataset: str
    purpose: str
    agreement_id: bytes
    subject_pseudonym: bytes
    payload_commitment: bytes
    payload_size: int
    def __init__(self, provider: _Optional[str] = ..., recipient: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., agreement_id: _Optional[bytes] = ..., subject_pseudonym: _Optional[bytes] = ..., payload_commitment: _Optional[bytes] = ..., payload_size: _Optional[int] = ...) -> None: ...

class Anchor(_message.Message):
    __slots__ = ("source", "key_pseudonym", "version", "commitment", "rows")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    KEY_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    source: str
    key_pseudonym: bytes
    version: str
    commitment: bytes
    rows: _containers.RepeatedCompositeFieldContainer[AnchoredRow]
    def __init__(self, source: _Optional[str] = ..., key_pseudonym: _Optional[bytes] = ..., version: _Optional[str] = ..., commitment: _Optional[bytes] = ..., rows: _Optional[_Iterable[_Union[AnchoredRow, _Mapping]]] = ...) -> None: ...

class AnchoredRow(_message.Message):
    __slots__ = ("key_pseudonym", "version", "commitment")
    KEY_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    key_pseudonym: bytes
    version: str
    commitment: bytes
    def __init__(self, key_pseudonym: _Optional[bytes] = ..., version: _Optional[str] = ..., commitment: _Optional[bytes] = ...) -> None: ...

class SharingAgreement(_message.Message):
    __slots__ = ("provider", "recipient", "datasets", "purpose", "legal_basis", "valid_from_ms", "valid_until_ms", "countersigner", "countersignature")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNER_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    recipient: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    legal_basis: str
    valid_from_ms: int
    valid_until_ms: int
    countersigner: bytes
    countersignature: bytes
    def __init__(self, provider: _Optional[str] = ..., recipient: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., legal_basis: _Optional[str] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., countersigner: _Optional[bytes] = ..., countersignature: _Optional[bytes] = ...) -> None: ...

class AgreementRevocation(_message.Message):
    __slots__ = ("agreement_id", "reason")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agreement_id: bytes
    reason: str
    def __init__(self, agreement_id: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class Governance(_message.Message):
    __slots__ = ("action", "payload", "base", "expires_ms", "summary", "proposal_id")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    action: str
    payload: bytes
    base: bytes
    expires_ms: int
    summary: str
    proposal_id: bytes
    def __init__(self, action: _Optional[str] = ..., payload: _Optional[bytes] = ..., base: _Optional[bytes] = ..., expires_ms: _Optional[int] = ..., summary: _Optional[str] = ..., proposal_id: _Optional[bytes] = ...) -> None: ...

class Reconciliation(_message.Message):
    __slots__ = ("source", "rows_checked", "rows_changed", "rows_deleted", "rows_unanchored", "findings_commitment")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROWS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    ROWS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ROWS_DELETED_FIELD_NUMBER: _ClassVar[int]
    ROWS_UNANCHORED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    source: str
    rows_checked: int
    rows_changed: int
    rows_deleted: int
    rows_unanchored: int
    findings_commitment: bytes
    def __init__(self, source: _Optional[str] = ..., rows_checked: _Optional[int] = ..., rows_changed: _Optional[int] = ..., rows_deleted: _Optional[int] = ..., rows_unanchored: _Optional[int] = ..., findings_commitment: _Optional[bytes] = ...) -> None: ...
