"""``witness.toml``: the witness daemon's settings (same rules as node.toml, docs/CONFIG.md).

Every key has its default on the dataclass field; unknown keys are refused; errors name
the file and key; relative paths are resolved against the file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.config import LogSection, _read_toml, _Reader


@dataclass(frozen=True)
class WitnessSection:
    """[witness]: who the witness is, which network it follows and where it keeps state."""

    key: Path = Path("witness.skey")
    """The cosignature key (C2SP skey of type 0x04, from ``shadowledger witness init``)."""
    genesis: Path = Path("genesis.json")
    """The genesis of the one network this witness follows (origin and validator quorum)."""
    listen: str = "127.0.0.1:7380"
    """HTTP address of the tlog-witness API (``POST /add-checkpoint``) and ``GET /metrics``."""
    state_dir: Path = Path("state")
    """Cosigned checkpoints (``witness.sqlite``) and split-view evidence (``alarms/``)."""
    membership_chain: Path | None = None
    """Once governance changed the validators: the network's membership chain file
    (``shadowledger governance chain --out``), verified from the genesis and re-read when
    it changes; checkpoints are checked with the validators that sign their size."""


@dataclass(frozen=True)
class WitnessConfig:
    witness: WitnessSection = field(default_factory=WitnessSection)
    log: LogSection = field(default_factory=LogSection)
    source: Path | None = None

    @property
    def database(self) -> Path:
        return self.witness.state_dir / "witness.sqlite"

    @property
    def alarms_dir(self) -> Path:
        return self.witness.state_dir / "alarms"


def load_witness_config(path: str | Path, *, check_files: bool = True) -> WitnessConfig:
    """Read and check ``witness.toml``; ConfigError naming the key if anything is wrong."""
    path = Path(path)
    doc = _read_toml(path)
    reader = _Reader(path)
    reader.check_keys(doc, "", ("witness", "log"))
    witness = reader.section(WitnessSection, doc.get("witness", {}), "witness")
    log = reader.section(LogSection, doc.get("log", {}), "log")
    reader.address("witness.listen", witness.listen)
    if check_files:
        for key in ("key", "genesis"):
            file = getattr(witness, key)
            if not file.is_file():
                raise reader.error(f"witness.{key}", f"file {file} does not exist")
    return WitnessConfig(witness, log, path)


def config_text(key: str, genesis: str, listen: str) -> str:
    """A witness.toml with the given key file, genesis and address (``witness init``)."""
    return (
        "[witness]\n"
        f'key = "{key}"\n'
        f'genesis = "{genesis}"\n'
        f'listen = "{listen}"\n'
        'state_dir = "state"\n'
        "\n[log]\n"
        'format = "json"\n'
        'level = "info"\n'
    )
