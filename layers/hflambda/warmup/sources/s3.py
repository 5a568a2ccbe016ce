"""``s3://bucket/prefix``: a mirror of pinned Hub snapshots, so production warms without the Hub.

Layout (written by ``hflambda mirror``, see ``hflambda.warmup.mirror``)::

    s3://bucket/prefix/<revision>/<file>          the repo files, same relative names
    s3://bucket/prefix/<revision>.mirror.json     {"repo", "revision", "files": {name: {size, sha256}}}

The ``.mirror.json`` is written last: S3 has no multi-object commit, so a revision counts as
mirrored only once its manifest exists, and the manifest is what every fetched file is
checked against (size and sha256). The manifest sits beside the revision folder, not in it,
so the folder holds exactly the repo's files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from hflambda.errors import HflambdaError, SourceError
from hflambda.registry import ModelSpec
from hflambda.settings import Settings, get_settings
from hflambda.store import FileEntry, sha256_file
from hflambda.telemetry import logger
from hflambda.warmup.retry import Deadline, RetryPolicy, Transient, with_retries
from hflambda.warmup.sources.base import FetchedSource, ProgressCallback

__all__ = ["MIRROR_SUFFIX", "MirrorManifest", "S3Source", "manifest_key", "parse_s3_uri", "revision_prefix"]

MIRROR_SUFFIX = ".mirror.json"
# AWS error codes worth another attempt (botocore already retried them a few times itself)
TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix") (prefix without slashes at the ends)."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError(f"{uri!r} names no bucket; expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def revision_prefix(prefix: str, revision: str) -> str:
    """Key prefix (ending in '/') of one mirrored revision's files."""
    return f"{prefix}/{revision}/" if prefix else f"{revision}/"


def manifest_key(prefix: str, revision: str) -> str:
    """Key of one mirrored revision's manifest (written last)."""
    return f"{prefix}/{revision}{MIRROR_SUFFIX}" if prefix else f"{revision}{MIRROR_SUFFIX}"


def safe_relative(name: str) -> str:
    """A manifest file name that stays inside the target folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise SourceError(f"mirror manifest lists an unsafe file name {name!r}")
    return path.as_posix()


class MirrorManifest:
    """The ``<revision>.mirror.json`` document."""

    def __init__(self, repo: str, revision: str, files: dict[str, FileEntry], **extra: Any) -> None:
        self.repo = repo
        self.revision = revision
        self.files = files
        self.extra = extra

    def to_json(self) -> str:
        """Serialized form (stable key order)."""
        body = {
            "format": 1,
            "repo": self.repo,
            "revision": self.revision,
            "files": {name: entry.model_dump() for name, entry in sorted(self.files.items())},
            **self.extra,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> MirrorManifest:
        """Parse and validate; SourceError says what is wrong."""
        try:
            data = json.loads(text)
            files = {safe_relative(n): FileEntry.model_validate(e) for n, e in data["files"].items()}
            extra = {k: v for k, v in data.items() if k not in {"repo", "revision", "files"}}
            return cls(repo=str(data["repo"]), revision=str(data["revision"]), files=files, **extra)
        except SourceError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"mirror manifest {where} is unreadable: {exc}") from exc


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = error.get("Code")
        return str(code) if code is not None else None
    return None


class S3Source:
    """Fetch a pinned revision from an ``s3://`` mirror, verifying every file.

    Options: ``s3_client`` (a boto3 S3 client; default ``boto3.client("s3")``), ``settings``,
    ``remaining_seconds``, ``retry``, ``progress``; others are ignored.
    """

    def __init__(
        self,
        uri: str,
        *,
        s3_client: Any | None = None,
        settings: Settings | None = None,
        remaining_seconds: Callable[[], float] | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        **_other: Any,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = parse_s3_uri(uri)
        self._client = s3_client
        settings = settings or get_settings()
        self.deadline = Deadline(remaining_seconds, settings.warmup_reserve_seconds)
        self.retry = retry or RetryPolicy()
        self.progress = progress

    @property
    def client(self) -> Any:
        """The S3 client (created on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def revision(self, spec: ModelSpec) -> str:
        """The pinned commit; no request is made."""
        if not spec.revision:
            raise SourceError(f"models.{spec.alias}.revision: s3:// mirrors need a pinned 40-hex commit sha")
        return spec.revision

    def _classify(self, spec: ModelSpec, revision: str) -> Callable[[BaseException], Transient | None]:
        def classify(exc: BaseException) -> Transient | None:
            if isinstance(exc, _Mismatch):
                return Transient(str(exc))
            code = _error_code(exc)
            where = f"models.{spec.alias}"
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise SourceError(
                    f"{where}: the mirror {self.uri} has no complete copy of revision {revision} "
                    f"(s3://{self.bucket}/{manifest_key(self.prefix, revision)} is missing). "
                    f"Run `hflambda mirror {spec.alias} {self.uri}`.",
                    uri=self.uri,
                )
            if code == "NoSuchBucket":
                raise SourceError(
                    f"{where}: bucket {self.bucket!r} of {self.uri} does not exist", uri=self.uri
                )
            if code in {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}:
                raise SourceError(
                    f"{where}: access denied to {self.uri}; grant warmup s3:GetObject on s3://{self.bucket}/{self.prefix}/*",
                    uri=self.uri,
                )
            if code in TRANSIENT_CODES:
                return Transient(f"S3 {code}")
            try:
                from botocore.exceptions import ConnectionError as BotoConnectionError
                from botocore.exceptions import IncompleteReadError, ResponseStreamingError
            except ImportError:  # pragma: no cover - botocore always ships these
                return None
            if isinstance(exc, BotoConnectionError | IncompleteReadError | ResponseStreamingError):
                return Transient(f"S3 connection problem: {type(exc).__name__}")
            return None

        return classify

    def _give_up(self, spec: ModelSpec) -> Callable[[str, Transient], HflambdaError]:
        return lambda message, last: SourceError(f"models.{spec.alias}: {message}", uri=self.uri)

    def read_manifest(self, revision: str) -> MirrorManifest:
        """The mirror manifest of ``revision`` (botocore errors propagate)."""
        key = manifest_key(self.prefix, revision)
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return MirrorManifest.from_json(body, f"s3://{self.bucket}/{key}")

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Download every file the mirror manifest lists into ``workdir`` and verify it."""
        revision = self.revision(spec)
        classify = self._classify(spec, revision)
        give_up = self._give_up(spec)
        what = f"fetching {self.uri}/{revision[:12]}"
        manifest = with_retries(
            lambda: self.read_manifest(revision),
            classify=classify,
            what=what,
            policy=self.retry,
            deadline=self.deadline,
            give_up=give_up,
        )
        if manifest.revision != revision:
            raise SourceError(
                f"models.{spec.alias}: {self.uri} manifest for {revision} says revision {manifest.revision}",
                uri=self.uri,
            )
        if manifest.repo != spec.repo:
            raise SourceError(
                f"models.{spec.alias}: the mirror {self.uri} holds {manifest.repo!r}@{revision[:12]}, not {spec.repo!r}; "
                "point the alias at the right prefix",
                uri=self.uri,
            )
        total = sum(e.size for e in manifest.files.values())
        done = 0
        if self.progress is not None:
            self.progress(0, total)
        base = revision_prefix(self.prefix, revision)
        for name, entry in sorted(manifest.files.items()):
            target = workdir / name

            def download(name: str = name, entry: FileEntry = entry, target: Path = target) -> None:
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, base + name, str(target))
                size = target.stat().st_size
                if size != entry.size or sha256_file(target) != entry.sha256:
                    target.unlink(missing_ok=True)
                    raise _Mismatch(f"{name}: downloaded {size} bytes that do not match the mirror manifest")

            with_retries(
                download,
                classify=classify,
                what=what,
                policy=self.retry,
                deadline=self.deadline,
                give_up=give_up,
            )
            done += entry.size
            if self.progress is not None:
                self.progress(done, total)
        logger.info(
            "fetched from the S3 mirror",
            extra={"model": spec.alias, "uri": self.uri, "revision": revision, "files": len(manifest.files)},
        )
        return FetchedSource(
            path=workdir, revision=revision, bytes_downloaded=total, files=dict(manifest.files)
        )


class _Mismatch(Exception):
    """A downloaded object differs from the mirror manifest (retried)."""
