"""Copy a pinned Hub snapshot to an S3 prefix (the layout is in ``hflambda.warmup.sources.s3``).

The snapshot is fetched with the same ``HubSource`` warmup uses (same allow patterns, same
retries, same verification), uploaded file by file, and the ``<revision>.mirror.json``
manifest is written last, so a half-finished mirror is never taken for a complete one. A
revision already mirrored with all its files is left alone unless ``force`` is set.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.settings import Settings
from hflambda.store import FileEntry
from hflambda.telemetry import logger
from hflambda.warmup.retry import RetryPolicy
from hflambda.warmup.sources.hub import HubSource, TokenSource
from hflambda.warmup.sources.s3 import MirrorManifest, S3Source, manifest_key, parse_s3_uri, revision_prefix

__all__ = ["MirrorResult", "mirror_model"]


@dataclass
class MirrorResult:
    """What ``mirror_model`` did."""

    alias: str
    repo: str
    revision: str
    destination: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    bytes_uploaded: int = 0
    skipped: bool = False

    @property
    def source_uri(self) -> str:
        """The value to put in the registry's ``source`` for this alias."""
        return self.destination


def _already_mirrored(s3: S3Source, revision: str) -> MirrorManifest | None:
    try:
        manifest = s3.read_manifest(revision)
    except Exception:  # missing or unreadable: mirror it (again)
        return None
    base = revision_prefix(s3.prefix, revision)
    for name, entry in manifest.files.items():
        try:
            head = s3.client.head_object(Bucket=s3.bucket, Key=base + name)
        except Exception:
            return None
        if int(head.get("ContentLength", -1)) != entry.size:
            return None
    return manifest


def mirror_model(
    spec: ModelSpec,
    destination: str,
    *,
    settings: Settings,
    s3_client: Any | None = None,
    token: TokenSource | None = None,
    retry: RetryPolicy | None = None,
    download_progress: Callable[[int, int], None] | None = None,
    upload_progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> MirrorResult:
    """Mirror ``spec``'s pinned revision of ``hf://<repo>`` to ``destination`` (s3://bucket/prefix)."""
    if not spec.revision:
        raise SourceError(f"models.{spec.alias}.revision: pin a commit sha before mirroring")
    bucket, prefix = parse_s3_uri(destination)
    destination = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    s3 = S3Source(destination, s3_client=s3_client, settings=settings, retry=retry)
    result = MirrorResult(alias=spec.alias, repo=spec.repo, revision=spec.revision, destination=destination)
    if not force:
        existing = _already_mirrored(s3, spec.revision)
        if existing is not None and existing.repo == spec.repo:
            result.files, result.skipped = existing.files, True
            return result
    hub = HubSource(
        f"hf://{spec.repo}", settings=settings, token=token, retry=retry, progress=download_progress
    )
    with tempfile.TemporaryDirectory(prefix="hflambda-mirror-") as tmp:
        fetched = hub.fetch(spec, Path(tmp))
        base = revision_prefix(prefix, spec.revision)
        total = sum(e.size for e in fetched.files.values())
        done = 0
        for name, entry in sorted(fetched.files.items()):
            s3.client.upload_file(
                str(Path(tmp) / name), bucket, base + name, ExtraArgs={"Metadata": {"sha256": entry.sha256}}
            )
            done += entry.size
            if upload_progress is not None:
                upload_progress(done, total)
    manifest = MirrorManifest(
        repo=spec.repo,
        revision=spec.revision,
        files=fetched.files,
        source=f"hf://{spec.repo}",
        endpoint=hub.endpoint,
        mirrored_at=datetime.now(UTC).isoformat(),
    )
    # last: only now is the revision complete in the mirror
    s3.client.put_object(
        Bucket=bucket,
        Key=manifest_key(prefix, spec.revision),
        Body=manifest.to_json().encode(),
        ContentType="application/json",
    )
    result.files, result.bytes_uploaded = fetched.files, total
    logger.info(
        "mirrored",
        extra={
            "model": spec.alias,
            "repo": spec.repo,
            "revision": spec.revision,
            "destination": destination,
            "bytes": total,
        },
    )
    return result
