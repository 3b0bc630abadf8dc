"""Signed checkpoints: the chain head, signed with Ed25519, kept outside the database too.

The hash chain shows an edited, inserted or reordered record, but not a log cut
short at its end: the shorter chain is still a valid chain. A checkpoint is the
head (sequence number and hash) signed by the gateway's key and written both to
the log and to a separate file; `audit verify` then knows how far the log went
and that nobody rewrote it since, and rejects a checkpoint whose signature fails.
The log's own checkpoint records catch a chain edited and re-hashed after them; the
external copy also catches a rewrite that re-hashed everything and dropped those
records, which is why verify insists that the two agree and that the copy exists.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from gateway.canonical import canonical_json

if TYPE_CHECKING:
    from gateway.store.protocols import AuditLog


class Checkpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str
    ts: str
    signature: str
    """Base64 Ed25519 signature over the canonical JSON of {seq, hash, ts}."""

    def signed_bytes(self) -> bytes:
        return canonical_json({"seq": self.seq, "hash": self.hash, "ts": self.ts}).encode()


def load_or_create_key(path: Path, create: bool = True) -> Ed25519PrivateKey:
    """The signing key; created (with its public key beside it, `.pub`) on first use when `create`.

    Creation is atomic: processes starting at once on one folder agree on one key (the first to link
    its file wins; the others read it). Without `create` (replicas, which must share one key), a
    missing key is an error naming the file and the fix.
    """
    if not path.exists():
        if not create:
            raise ValueError(
                f"audit.checkpoint_key: no signing key at {path}; replicas share one key:"
                " `portcullis db init` creates it, then copy it (and its .pub) to every replica"
            )
        _create_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    draft = path.with_name(f".{path.name}.{os.getpid()}.new")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    try:
        os.link(draft, path)  # fails if another process made the key first: theirs is the key
    except FileExistsError:
        return
    finally:
        draft.unlink()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_draft = path.with_name(f".{path.name}.{os.getpid()}.pub.new")
    public_draft.write_bytes(public)
    public_draft.replace(public_key_path(path))


def public_key_path(private: Path) -> Path:
    return private.with_suffix(".pub")


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, seq: int, head: str, ts: str) -> Checkpoint:
    unsigned = Checkpoint(seq=seq, hash=head, ts=ts, signature="")
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
    return unsigned.model_copy(update={"signature": signature})


def valid(checkpoint: Checkpoint, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


def append_to_file(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(checkpoint.model_dump_json() + "\n")


def read_file(path: Path) -> list[Checkpoint | dict[str, Any]]:
    """Checkpoints from the file; an unreadable line comes back as `{"line": n, "problem": ...}`."""
    if not path.exists():
        return []
    found: list[Checkpoint | dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(Checkpoint.model_validate(json.loads(line)))
        except (ValueError, TypeError) as exc:
            found.append({"line": number, "problem": f"not a checkpoint: {exc}"})
    return found


def verify_checkpoints(
    heads: dict[int, str], last_seq: int, checkpoints: list[Checkpoint | dict[str, Any]], public: Ed25519PublicKey
) -> tuple[int, str] | None:
    """The first problem (sequence number, message) the checkpoints reveal in the log, or None."""
    for entry in checkpoints:
        if not isinstance(entry, Checkpoint):
            return 0, f"checkpoint file line {entry['line']}: {entry['problem']}"
        if not valid(entry, public):
            return entry.seq, f"the checkpoint for record {entry.seq} has a bad signature (forged or corrupted)"
        if entry.seq > last_seq:
            return last_seq + 1, (
                f"the log ends at record {last_seq} but a signed checkpoint covers record {entry.seq}:"
                " records were removed from its end"
            )
        if heads.get(entry.seq) != entry.hash:
            return entry.seq, f"record {entry.seq} differs from its signed checkpoint"
    return None


def verify_logged(
    heads: dict[int, str], logged: list[tuple[int, Checkpoint | str]], public: Ed25519PublicKey
) -> tuple[int, str] | None:
    """The first problem in the log's own `audit.checkpoint` records, or None.

    Each must carry a checkpoint signed by the configured key over a head that is still the
    chain's at that sequence number: a chain edited and re-hashed after a checkpoint no
    longer matches it, and one re-signed with another key fails the signature.
    """
    holds = 0
    for record_seq, entry in logged:
        if isinstance(entry, str):
            return record_seq, f"checkpoint record {record_seq} does not carry a checkpoint: {entry}"
        if not valid(entry, public):
            return record_seq, (
                f"checkpoint record {record_seq} has a bad signature: forged, or signed with a key other than"
                " the configured public key"
            )
        if entry.seq >= record_seq:
            return record_seq, f"checkpoint record {record_seq} signs record {entry.seq}, which came after it"
        if heads.get(entry.seq) != entry.hash:
            return entry.seq, (
                f"record {entry.seq} differs from the head signed in checkpoint record {record_seq}: the log was"
                f" rewritten after record {holds} (the last signed head that still holds) and re-hashed"
            )
        holds = max(holds, entry.seq)
    return None


def _keys(checkpoints: list[Checkpoint]) -> set[tuple[int, str, str, str]]:
    return {(c.seq, c.hash, c.ts, c.signature) for c in checkpoints}


def missing_from_log(logged: list[Checkpoint], copy: list[Checkpoint], file: Path) -> tuple[int, str] | None:
    """A checkpoint the external copy holds and the log lacks (the log was rewritten or replaced), or None.

    Read the copy before the log: the gateway appends to the log first, so a live log holds
    everything a copy read earlier holds.
    """
    heads_in_log = {c.seq: c.hash for c in logged}
    extra = sorted(_keys(copy) - _keys(logged))
    if not extra:
        return None
    seq, digest = extra[0][:2]
    if heads_in_log.get(seq, digest) != digest:
        return seq, f"the log and {file} sign different heads for record {seq}"
    return seq, f"{file} holds a checkpoint of record {seq} that the log lacks: the log was rewritten or replaced"


def missing_from_copy(logged: list[Checkpoint], copy: list[Checkpoint], file: Path) -> tuple[int, str] | None:
    """A checkpoint the log holds and the external copy lacks, or None (read the copy after the log)."""
    extra = sorted(_keys(logged) - _keys(copy))
    if not extra:
        return None
    seq = extra[0][0]
    return seq, (
        f"the log holds a checkpoint of record {seq} that {file} lacks: the copy was edited or replaced,"
        " or the gateway stopped between writing the two (then append the log's checkpoint to the copy)"
    )


async def write_checkpoint(store: AuditLog, key: Ed25519PrivateKey, file: Path) -> Checkpoint | None:
    """Sign the current chain head (as committed by every process); record it in the log and append it to `file`."""
    import anyio.to_thread

    from gateway.audit.records import AuditRecord, utc_now

    seq, digest = await store.head()
    if seq == 0:
        return None
    checkpoint = sign(key, seq, digest, utc_now())
    await store.append(AuditRecord(event="audit.checkpoint", detail=checkpoint.model_dump()))
    await anyio.to_thread.run_sync(append_to_file, file, checkpoint)
    return checkpoint
