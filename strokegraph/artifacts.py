"""Where a run's images live besides its run directory: an artifact store shared between machines.

A store keeps bytes under keys that strokegraph builds itself, ``<thread id>/images/<name>.png``
and ``<thread id>/run.json``, and hands them back only when their sha256 is the one the caller
recorded (in a checkpoint). A run that writes its images to a store and its checkpoints to a shared
database can be resumed on another machine, into another directory (see
:func:`strokegraph.app.runner.resume`'s ``thread``).

Two stores: :class:`LocalDirStore` (a directory, e.g. a shared mount) and :class:`S3Store` (any
S3-compatible service through boto3, the ``s3`` extra). Without a store a run keeps its images in
its run directory only, exactly as it always did.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from strokegraph._redact import redact_url
from strokegraph._text import check_utf8
from strokegraph.errors import RunError, UsageError
from strokegraph.schema import read_plain, write_new

__all__ = [
    "MAX_BYTES",
    "ArtifactStore",
    "LocalDirStore",
    "S3Store",
    "check_key",
    "check_thread",
    "image_key",
    "open_store",
    "record_key",
]

#: The most bytes a store hands back: no image of a run comes near it (as ``ImageRef`` reads).
MAX_BYTES = 256 << 20

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_THREAD = re.compile(_NAME)
_KEY = re.compile(rf"{_NAME}/(?:images/{_NAME}\.png|run\.json)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_thread(thread_id: str) -> str:
    """``thread_id`` when it can name a folder of a store: one plain name, no ``..``; else a UsageError."""
    if not isinstance(thread_id, str) or not _THREAD.fullmatch(thread_id) or ".." in thread_id:
        raise UsageError(f"thread id {str(thread_id)[:80]!r} is not a plain name (letters, digits, '.', '_', '-')")
    return thread_id


def check_key(key: str) -> str:
    """``key`` when it is ``<thread>/images/<name>.png`` or ``<thread>/run.json``; else a RunError.

    Keys are built by :func:`image_key` and :func:`record_key`; this is the last check before one
    reaches a file system or a bucket, so that no key escapes the store's folder or prefix.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key) or ".." in key:
        raise RunError(f"artifact key {str(key)[:200]!r} is not <thread>/images/<name>.png or <thread>/run.json")
    return key


def image_key(thread_id: str, path: str) -> str:
    """The key of the image at ``path`` (an :class:`~strokegraph.schema.ImageRef` path) of a thread."""
    return check_key(f"{check_thread(thread_id)}/{path}")


def record_key(thread_id: str) -> str:
    """The key of a thread's ``run.json``."""
    return check_key(f"{check_thread(thread_id)}/run.json")


@runtime_checkable
class ArtifactStore(Protocol):
    """Bytes by key, handed back only when they are the bytes that were stored."""

    url: str
    """Where the store is, as a person would name it again (``s3://bucket/prefix``, a directory)."""

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``, replacing what was there, and return its sha256 (hex)."""
        ...

    def get(self, key: str, sha256: str, *, max_bytes: int = MAX_BYTES) -> bytes:
        """The bytes under ``key`` once their sha256 is ``sha256``.

        Raises :class:`RunError` when they are missing, larger than ``max_bytes`` or changed.
        """
        ...


def _verified(key: str, data: bytes, sha256: str, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise RunError(f"artifact {key!r} is larger than {max_bytes} bytes")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256) or hashlib.sha256(data).hexdigest() != sha256:
        raise RunError(f"artifact {key!r} in the store differs from the one the run recorded (sha256 mismatch)")
    return data


class LocalDirStore:
    """A directory as a store: ``<root>/<thread>/images/<name>.png``. Symlinks under it are refused."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(check_utf8("artifact store", os.fspath(root))).absolute()
        self.url = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot use {self.url!r} as an artifact store: {exc.strerror or exc}") from None

    def _target(self, key: str) -> Path:
        target = self.root / check_key(key)
        # Each folder between the root and the file: a link planted there would lead outside the root.
        for folder in list(target.relative_to(self.root).parents)[:-1]:
            if (self.root / folder).is_symlink():
                raise RunError(f"artifact folder {str(folder)!r} is a symlink; a store holds its own folders")
        return target

    def put(self, key: str, data: bytes) -> str:
        target = self._target(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._target(key)  # again, now that the folders exist: one may have been a link already
        write_new(target, data)
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str, sha256: str, *, max_bytes: int = MAX_BYTES) -> bytes:
        target = self._target(key)
        try:
            data = read_plain(target, max_bytes)
        except OSError as exc:
            raise RunError(f"cannot read artifact {key!r} from {self.url!r}: {exc.strerror or exc}") from None
        return _verified(key, data, sha256, max_bytes)


_S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/((?:[A-Za-z0-9._-]+/?)*))?")


class S3Store:
    """An S3 bucket (and optional prefix) as a store: ``s3://bucket/prefix/<thread>/images/<name>.png``.

    Any S3-compatible service: ``endpoint_url`` (or boto3's ``AWS_ENDPOINT_URL``) names MinIO, Ceph,
    R2 or a test server. Credentials come from boto3's usual chain (environment, profile, role),
    never from a run's files. The bucket must exist; it is checked here, before any run starts.
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None) -> None:
        m = _S3_URL.fullmatch(url) if isinstance(url, str) else None
        if not m or ".." in url:
            raise UsageError(f"artifact store {str(url)[:200]!r} is not s3://BUCKET[/PREFIX]")
        try:
            import boto3
            import botocore.config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise UsageError("an s3:// store needs boto3: pip install 'strokegraph[s3]'") from None
        self.bucket, self.prefix = m[1], (m[2] or "").strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        config = botocore.config.Config(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60
        )
        session = boto3.session.Session()
        if session.get_credentials() is None:
            raise UsageError(
                f"no AWS credentials for {self.url!r}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        self._client = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        self._errors = (BotoCoreError, ClientError)
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise UsageError(f"cannot use artifact store {self.url!r}: {_boto_reason(exc)}") from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    def put(self, key: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"sha256": sha})
        except self._errors as exc:
            raise RunError(f"cannot store {key!r} in {self.url!r}: {_boto_reason(exc)}", transient=True) from None
        return sha

    def get(self, key: str, sha256: str, *, max_bytes: int = MAX_BYTES) -> bytes:
        try:
            obj = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = obj["Body"]
            try:
                if obj.get("ContentLength", 0) > max_bytes:
                    raise RunError(f"artifact {key!r} is larger than {max_bytes} bytes")
                data = body.read(max_bytes + 1)
            finally:
                body.close()
        except self._errors as exc:
            raise RunError(f"cannot fetch {key!r} from {self.url!r}: {_boto_reason(exc)}") from None
        return _verified(key, data, sha256, max_bytes)


def _boto_reason(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')} {error.get('Message', '')}".strip()[:200]
    # botocore's messages name the endpoint; one given as http://user:pass@host must not print its password.
    return redact_url(" ".join(str(exc).split()))[:200]


def open_store(
    spec: str | os.PathLike | ArtifactStore | None, *, endpoint_url: str | None = None
) -> ArtifactStore | None:
    """The store ``spec`` names: None (the run directory only), ``s3://bucket[/prefix]``, or a directory."""
    if spec is None or isinstance(spec, ArtifactStore):
        if endpoint_url is not None:
            raise UsageError("a store endpoint applies to an s3:// store only")
        return spec
    text = os.fspath(spec)
    if text.startswith("s3://"):
        return S3Store(text, endpoint_url=endpoint_url)
    if endpoint_url is not None:
        raise UsageError("a store endpoint applies to an s3:// store only")
    if "://" in text:
        raise UsageError(f"artifact store {text[:200]!r} is neither s3://BUCKET[/PREFIX] nor a directory")
    return LocalDirStore(text)
