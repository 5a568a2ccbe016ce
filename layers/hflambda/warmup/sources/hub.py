"""``hf://org/name``: a pinned revision from the Hugging Face Hub, fetched with huggingface_hub.

One fetch is: the model info of the pinned commit with file metadata (names, sizes, git blob
ids, LFS sha256s), then ``snapshot_download`` of the files the exporter needs into the
staging folder, then a check of every file against that metadata. Anything transient — 429
(whose ``Retry-After``/``RateLimit`` hint is honoured), 5xx, a reset connection, a truncated
or corrupted file — is retried with bounded backoff inside the invocation's time budget;
files already verified are kept between attempts. Anything permanent becomes a typed error
that names the repo and says what to do. When the configured token secret is unusable (see
``hflambda.secrets``) requests go without a token, and a repo that needs one (401, 403,
gated, not found) fails with the secret's own ``secret_missing``/``secret_invalid``.

huggingface_hub 0.36 pitfalls handled here (FACTS.md):

- a 429 on model info or file metadata surfaces as ``LocalEntryNotFoundError``, a subclass
  of ``EntryNotFoundError``; the 429 response is on ``__cause__``. Causes are inspected
  before anything is called "not found".
- ``GatedRepoError`` is a ``RepositoryNotFoundError``: gated is checked first.
- when its own model-info call fails, ``snapshot_download`` silently returns a non-empty
  ``local_dir`` as is: retries ask for the model info first (so a 429 and its hint surface),
  and the file check after every attempt catches whatever still slips through.
- ``HF_ENDPOINT`` is read when huggingface_hub is imported, so ``endpoint=`` is passed
  explicitly (settings ``hf_endpoint``, else huggingface_hub's own ``HF_ENDPOINT``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hflambda.errors import HflambdaError, HubAccessDenied, HubNotFound, HubRateLimited, SourceError
from hflambda.registry import ModelSpec
from hflambda.secrets import HfToken
from hflambda.settings import Settings, get_settings
from hflambda.store import FileEntry
from hflambda.telemetry import logger
from hflambda.warmup.retry import Deadline, RetryPolicy, Transient, retry_hint_seconds, with_retries
from hflambda.warmup.sources.base import ALLOW_PATTERNS, FetchedSource, ProgressCallback

__all__ = ["HubSource", "RemoteFile", "TokenSource"]


class TokenSource(Protocol):
    """What HubSource needs from the token holder (``hflambda.secrets.HfToken``)."""

    @property
    def sends_token(self) -> bool: ...

    def get(self) -> str | bool | None: ...

    def describe(self) -> str: ...

    def rejected(self, repo: str) -> HubAccessDenied: ...

    def needed(self, where: str, repo: str, answer: str) -> HflambdaError | None: ...


@dataclass(frozen=True)
class RemoteFile:
    """A file of the pinned commit as the Hub describes it."""

    name: str
    size: int
    sha256: str | None = None  # LFS files: sha256 of the content
    blob_id: str | None = None  # regular files: git blob sha1


class _IncompleteDownload(Exception):
    """Files missing or not matching the Hub's metadata after a download attempt."""


def _hashes(path: Path) -> tuple[str, str]:
    """sha256 and git blob sha1 in one read."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha1.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


class HubSource:
    """Fetch a pinned revision of ``hf://org/name`` (see the module docstring).

    Options (the runner passes them through ``source_options``; unknown ones are ignored so
    every backend can share one options dict): ``settings``, ``endpoint`` (overrides
    settings), ``token`` (a TokenSource; default: ``HfToken`` from settings),
    ``remaining_seconds`` (the invocation's clock), ``retry`` (a RetryPolicy), ``progress``
    (called with bytes verified so far and the total), ``max_workers``.
    """

    def __init__(
        self,
        uri: str,
        *,
        settings: Settings | None = None,
        endpoint: str | None = None,
        token: TokenSource | None = None,
        remaining_seconds: Callable[[], float] | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        max_workers: int = 4,
        **_other: Any,
    ) -> None:
        self.repo = uri.removeprefix("hf://").strip("/")
        if self.repo.count("/") > 1 or not self.repo:
            raise SourceError(f"source {uri!r}: expected hf://<org>/<name>")
        settings = settings or get_settings()
        self._endpoint = endpoint or settings.hf_endpoint
        self.token: TokenSource = token or HfToken(settings.hf_token_secret, max_age=settings.secret_max_age)
        self.deadline = Deadline(remaining_seconds, settings.warmup_reserve_seconds)
        self.retry = retry or RetryPolicy()
        self.progress = progress
        self.max_workers = max_workers

    @property
    def endpoint(self) -> str:
        """The Hub URL: settings ``hf_endpoint``, else huggingface_hub's ``HF_ENDPOINT``/default."""
        if self._endpoint:
            return self._endpoint.rstrip("/")
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")

    def revision(self, spec: ModelSpec) -> str:
        """The pinned commit (the registry requires one for hf://); no request is made."""
        if not spec.revision:
            raise SourceError(f"models.{spec.alias}.revision: hf:// sources need a pinned 40-hex commit sha")
        return spec.revision

    # --- errors --------------------------------------------------------------------------

    def _classify(self, spec: ModelSpec, revision: str) -> Callable[[BaseException], Transient | None]:
        """Map one failure to a retry (Transient), a typed error (raised), or None (unknown)."""
        return _Classifier(self, spec, revision)

    def _needs_token(self, spec: ModelSpec, answer: str) -> HflambdaError | None:
        """The secret's own error when no token was sent because the configured secret is unusable."""
        return self.token.needed(f"models.{spec.alias}", self.repo, answer)

    def _gated(self, spec: ModelSpec) -> HubAccessDenied:
        page = f"{self.endpoint}/{self.repo}"
        if self.token.sends_token:
            what = f"{self.token.describe()} belongs to an account without access"
            todo = f"log in to {page} with the account that owns the token and accept the license (or request access)"
        else:
            what = f"{self.token.describe()} was sent"
            todo = f"accept the license at {page}, then put that account's read token in the secret named by HFLAMBDA_HF_TOKEN_SECRET"
        return HubAccessDenied(
            f"models.{spec.alias}: {self.repo!r} is a gated repo and {what}: {todo}.", repo=self.repo
        )

    def _not_found(self, spec: ModelSpec) -> HubNotFound:
        hint = (
            "If the repo is private, the token's account needs read access to it."
            if self.token.sends_token
            else "If the repo is private, set HFLAMBDA_HF_TOKEN_SECRET to a secret holding a token with access."
        )
        return HubNotFound(
            f"models.{spec.alias}: repo {self.repo!r} was not found on {self.endpoint} with "
            f"{self.token.describe()}: it does not exist or it is private. {hint} Check models.{spec.alias}.repo.",
            repo=self.repo,
            token_used=self.token.sends_token,
        )

    def _give_up(self, spec: ModelSpec) -> Callable[[str, Transient], HflambdaError]:
        def give_up(message: str, last: Transient) -> HflambdaError:
            text = f"models.{spec.alias}: {message}"
            if last.rate_limited:
                return HubRateLimited(
                    text + ". Warm from an s3:// mirror (`hflambda mirror`) to stop depending on the Hub.",
                    repo=self.repo,
                )
            return SourceError(text, repo=self.repo)

        return give_up

    # --- fetching ------------------------------------------------------------------------

    def _remote_files(self, api: Any, spec: ModelSpec, revision: str) -> dict[str, RemoteFile]:
        from huggingface_hub.utils import filter_repo_objects

        info = api.model_info(self.repo, revision=revision, files_metadata=True)
        if info.sha and info.sha != revision:
            raise SourceError(
                f"models.{spec.alias}: the Hub resolved {revision!r} of {self.repo!r} to commit {info.sha}; "
                "pin the full commit sha",
                repo=self.repo,
            )
        siblings = {s.rfilename: s for s in (info.siblings or [])}
        files: dict[str, RemoteFile] = {}
        for name in filter_repo_objects(list(siblings), allow_patterns=ALLOW_PATTERNS):
            sibling = siblings[name]
            lfs = sibling.lfs
            size = lfs.size if lfs is not None else sibling.size
            if size is None:
                raise SourceError(
                    f"models.{spec.alias}: the Hub gave no size for {name} in {self.repo!r}", repo=self.repo
                )
            files[name] = RemoteFile(
                name=name,
                size=int(size),
                sha256=lfs.sha256 if lfs is not None else None,
                blob_id=sibling.blob_id,
            )
        if "config.json" not in files:
            raise SourceError(
                f"models.{spec.alias}: {self.repo!r}@{revision} has no config.json; is it a transformers model?",
                repo=self.repo,
            )
        return files

    def _verify(self, workdir: Path, expected: dict[str, RemoteFile]) -> dict[str, FileEntry]:
        """Check every expected file; drop bad ones (so the next attempt fetches them anew)."""
        verified: dict[str, FileEntry] = {}
        problems: list[str] = []
        for name, remote in expected.items():
            path = workdir / name
            if not path.is_file():
                problems.append(f"{name} missing")
                continue
            size = path.stat().st_size
            if size != remote.size:
                problems.append(f"{name} is {size} bytes, the Hub says {remote.size}")
                self._discard(workdir, remote)
                continue
            sha256, blob_sha1 = _hashes(path)
            if remote.sha256 is not None and sha256 != remote.sha256:
                problems.append(f"{name} sha256 differs from the Hub's LFS sha256")
                self._discard(workdir, remote)
                continue
            if remote.sha256 is None and remote.blob_id is not None and blob_sha1 != remote.blob_id:
                problems.append(f"{name} differs from the Hub's git blob id")
                self._discard(workdir, remote)
                continue
            verified[name] = FileEntry(size=size, sha256=sha256)
        if problems:
            raise _IncompleteDownload("; ".join(problems))
        return verified

    @staticmethod
    def _discard(workdir: Path, remote: RemoteFile) -> None:
        """Remove a bad file with huggingface_hub's record of it (else it would be trusted)."""
        (workdir / remote.name).unlink(missing_ok=True)
        try:
            from huggingface_hub._local_folder import get_local_download_paths

            paths = get_local_download_paths(workdir, remote.name)
            paths.metadata_path.unlink(missing_ok=True)
            etag = remote.sha256 or remote.blob_id
            if etag:
                paths.incomplete_path(etag).unlink(missing_ok=True)
        except (ImportError, AttributeError, OSError):  # private API moved: drop the whole record
            shutil.rmtree(workdir / ".cache" / "huggingface" / "download", ignore_errors=True)

    def _progress_class(self, workdir: Path, expected: dict[str, RemoteFile]) -> Any:
        """A tqdm class for snapshot_download that reports bytes on disk after each file."""
        from tqdm.auto import tqdm

        report = self.progress
        total = sum(f.size for f in expected.values())

        def on_file_done() -> None:
            if report is not None:
                done = sum(f.size for f in expected.values() if (workdir / f.name).is_file())
                report(done, total)

        class FileProgress(tqdm):  # type: ignore[type-arg,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                on_file_done()
                return None

        return FileProgress

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Download and verify the pinned revision into ``workdir`` (see the module docstring)."""
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # no tqdm noise in Lambda logs; progress goes to the observer
        revision = self.revision(spec)
        token = self.token.get()  # lazily, only now that a download is needed; never logged
        endpoint = self.endpoint
        api = HfApi(endpoint=endpoint, token=token)
        classify = self._classify(spec, revision)
        give_up = self._give_up(spec)
        what = f"fetching {self.repo}@{revision[:12]}"

        expected = with_retries(
            lambda: self._remote_files(api, spec, revision),
            classify=classify,
            what=what,
            policy=self.retry,
            deadline=self.deadline,
            give_up=give_up,
        )
        if self.progress is not None:
            self.progress(0, sum(f.size for f in expected.values()))
        progress_class = self._progress_class(workdir, expected)

        attempts = 0

        def attempt() -> dict[str, FileEntry]:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and any(workdir.iterdir()):
                # snapshot_download answers a failed model-info call with a non-empty local_dir
                # as it is, hiding the 429 and its Retry-After; ask first so they surface here
                api.model_info(self.repo, revision=revision)
            snapshot_download(
                self.repo,
                revision=revision,
                allow_patterns=ALLOW_PATTERNS,
                local_dir=workdir,
                endpoint=endpoint,
                token=token,
                max_workers=self.max_workers,
                tqdm_class=progress_class,
            )
            return self._verify(workdir, expected)

        verified = with_retries(
            attempt, classify=classify, what=what, policy=self.retry, deadline=self.deadline, give_up=give_up
        )
        shutil.rmtree(
            workdir / ".cache", ignore_errors=True
        )  # huggingface_hub's bookkeeping, not model files
        logger.info(
            "fetched from the Hub",
            extra={"model": spec.alias, "repo": self.repo, "revision": revision, "files": len(verified)},
        )
        return FetchedSource(
            path=workdir,
            revision=revision,
            bytes_downloaded=sum(f.size for f in verified.values()),
            files=verified,
        )


Verdict = Callable[[BaseException], "Transient | None"]


class _Classifier:
    """``HubSource._classify``: one failure -> a retry (Transient), a typed error (raised), or None.

    Every exception of the failure's cause/context chain is looked at in turn: the first type
    in ``by_type`` it is an instance of decides (a handler returning None moves on to the
    next exception of the chain); an exception of no listed type is judged by its HTTP status
    (``_http``), then as a transport failure (``_transport``).
    """

    def __init__(self, hub: HubSource, spec: ModelSpec, revision: str) -> None:
        import requests
        from huggingface_hub.errors import (
            DisabledRepoError,
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        self.hub, self.spec, self.revision = hub, spec, revision
        self.repo, self.where = hub.repo, f"models.{spec.alias}"
        self.requests = requests
        self.entry_not_found = EntryNotFoundError
        # order matters: huggingface_hub's errors subclass each other
        self.by_type: list[tuple[type[BaseException], Verdict]] = [
            (_IncompleteDownload, self._incomplete),
            (GatedRepoError, self._gated),  # before RepositoryNotFoundError, its base
            (RevisionNotFoundError, self._no_revision),
            (DisabledRepoError, self._disabled),
            (RepositoryNotFoundError, self._no_repo),
            # huggingface_hub's wrapper: the reason (429, 5xx, network) is its cause
            (LocalEntryNotFoundError, lambda error: None),
            (OfflineModeIsEnabled, self._offline),
        ]

    def __call__(self, exc: BaseException) -> Transient | None:
        for error in _chain(exc):
            verdict = self._one(error)
            if verdict is not None:
                return verdict
        return None

    def _one(self, error: BaseException) -> Transient | None:
        for kind, handle in self.by_type:
            if isinstance(error, kind):
                return handle(error)
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(error, self.requests.HTTPError) and isinstance(status, int):
            return self._http(error, status, response)
        return self._transport(error)

    # --- by type ---------------------------------------------------------------------------

    def _incomplete(self, error: BaseException) -> Transient:
        return Transient(f"incomplete or corrupted download: {error}")

    def _gated(self, error: BaseException) -> Transient:
        raise self.hub._needs_token(self.spec, "the Hub says it is gated") or self.hub._gated(self.spec)

    def _no_revision(self, error: BaseException) -> Transient:
        endpoint = self.hub.endpoint
        raise HubNotFound(
            f"{self.where}: revision {self.revision} not found in {self.repo!r} on {endpoint}. Pin a commit sha "
            f"that exists (see {endpoint}/{self.repo}/commits/main).",
            repo=self.repo,
            revision=self.revision,
        )

    def _disabled(self, error: BaseException) -> Transient:
        raise HubAccessDenied(
            f"{self.where}: {self.repo!r} is disabled on the Hub; pick another repo.", repo=self.repo
        )

    def _no_repo(self, error: BaseException) -> Transient:
        raise self.hub._needs_token(self.spec, "the Hub answered 'not found'") or self.hub._not_found(
            self.spec
        )

    def _offline(self, error: BaseException) -> Transient:
        raise SourceError(
            f"{self.where}: HF_HUB_OFFLINE is set in the warmup environment, so the Hub cannot be reached. "
            "Unset it, or warm from an s3:// mirror or file:// folder.",
            repo=self.repo,
        )

    # --- by HTTP status and transport --------------------------------------------------------

    def _http(self, error: BaseException, status: int, response: Any) -> Transient:
        endpoint = self.hub.endpoint
        if status == 429:
            hint = retry_hint_seconds(dict(response.headers)) if response is not None else None
            shown = f" (server asks to wait {hint:g} s)" if hint is not None else ""
            return Transient(f"429 Too Many Requests from {endpoint}{shown}", hint=hint, rate_limited=True)
        if status in {401, 403}:
            raise self._refused(status)
        if status >= 500 or status == 408:
            return Transient(f"HTTP {status} from {endpoint}")
        if isinstance(error, self.entry_not_found):
            raise SourceError(
                f"{self.where}: a file of {self.repo!r}@{self.revision} listed by the Hub is missing: {error}",
                repo=self.repo,
            )
        raise SourceError(
            f"{self.where}: the Hub answered HTTP {status} for {self.repo!r}: {error}", repo=self.repo
        )

    def _refused(self, status: int) -> HflambdaError:
        needs = self.hub._needs_token(self.spec, f"the Hub answered {status}")
        if needs is not None:
            return needs
        if status == 401:
            return self.hub.token.rejected(self.repo)
        return HubAccessDenied(
            f"{self.where}: the Hub refused access to {self.repo!r} (403 Forbidden) with {self.hub.token.describe()}. "
            "A fine-grained token needs read access to this repo.",
            repo=self.repo,
        )

    def _transport(self, error: BaseException) -> Transient | None:
        requests = self.requests
        if isinstance(
            error, requests.exceptions.ChunkedEncodingError | requests.ConnectionError | requests.Timeout
        ):
            return Transient(f"connection problem: {type(error).__name__}: {error}")
        if isinstance(error, OSError) and "Consistency check failed" in str(error):
            return Transient(f"truncated download: {str(error).splitlines()[0]}")
        return None
