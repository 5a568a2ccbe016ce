"""One warmup run: for each registry model, publish its pinned revision or say why not.

Per model: lock the alias (one writer), clean leftovers of crashed runs, skip when the
pinned revision with the same export settings is already live (no source access at all),
otherwise fetch → compile (export, quantize, parity) → publish atomically → GC old
revisions. A model that fails never stops the others, and its last good revision stays live.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hflambda.errors import HflambdaError, LockHeld
from hflambda.registry import ModelSpec, Registry, Task
from hflambda.secrets import HfToken
from hflambda.settings import Settings
from hflambda.store import Manifest, ModelStore
from hflambda.telemetry import logger
from hflambda.warmup.sources import open_source
from hflambda.warmup.sources.base import Source
from hflambda.warmup.types import CompileResult, ModelResult, ModelStatus, WarmupResult

__all__ = ["COMPILERS", "EXPORT_SETTINGS", "Observer", "run_warmup"]

Compiler = Callable[[ModelSpec, Path, Path], CompileResult]
SettingsFor = Callable[[ModelSpec], dict[str, Any]]


def _encoder(spec: ModelSpec, source: Path, out: Path) -> CompileResult:
    from hflambda.warmup.export import compile_encoder

    return compile_encoder(spec, source, out)


def _encoder_settings(spec: ModelSpec) -> dict[str, Any]:
    from hflambda.warmup.export import export_settings

    return export_settings(spec)


def _generation(spec: ModelSpec, source: Path, out: Path) -> CompileResult:
    from hflambda.warmup.genai import compile_generation

    return compile_generation(spec, source, out)


def _generation_settings(spec: ModelSpec) -> dict[str, Any]:
    from hflambda.warmup.genai import export_settings

    return export_settings(spec)


def _check_remote_generation(spec: ModelSpec, settings: Settings) -> str:
    from hflambda.generation.remote import check_remote_model

    return check_remote_model(spec, settings)


# task -> compiler (source folder -> output folder) and its export settings. Each entry imports
# its module on first use (export for the encoders, genai for text generation), so importing
# the runner loads neither.
COMPILERS: dict[Task, Compiler] = {
    Task.EMBEDDINGS: _encoder,
    Task.TEXT_CLASSIFICATION: _encoder,
    Task.TEXT_GENERATION: _generation,
}
EXPORT_SETTINGS: dict[Task, SettingsFor] = {
    Task.EMBEDDINGS: _encoder_settings,
    Task.TEXT_CLASSIFICATION: _encoder_settings,
    Task.TEXT_GENERATION: _generation_settings,
}
# remote models (text generation over a provider) are checked, not compiled
RemoteChecker = Callable[[ModelSpec, Settings], str]
REMOTE_CHECKERS: list[RemoteChecker] = [_check_remote_generation]


class Observer(Protocol):
    """Progress hooks (the CLI draws rich progress bars from these)."""

    def model_started(self, alias: str, total: int) -> None: ...

    def step(self, alias: str, name: str) -> None: ...

    def model_done(self, result: ModelResult) -> None: ...


# Observers may also define ``download(alias, done_bytes, total_bytes)``; the runner then
# hands the source a progress callback (the CLI draws a byte progress bar from it).


class _Quiet:
    def model_started(self, alias: str, total: int) -> None:
        pass

    def step(self, alias: str, name: str) -> None:
        pass

    def model_done(self, result: ModelResult) -> None:
        pass


def run_warmup(
    registry: Registry,
    store: ModelStore,
    settings: Settings,
    *,
    aliases: list[str] | None = None,
    remaining_seconds: Callable[[], float] | None = None,
    observer: Observer | None = None,
    source_options: dict[str, Any] | None = None,
) -> WarmupResult:
    """Warm every model (or ``aliases``) into ``store``; never raises for one model's failure.

    ``source_options`` reach the remote sources (see ``open_source``); the runner adds the
    settings, the invocation clock and one lazily-read HF token shared by the whole run.
    Every log line of the run carries its ``run_id`` as correlation id.
    """
    observer = observer or _Quiet()
    result = WarmupResult()
    logger.set_correlation_id(result.run_id)
    logger.append_keys(run_id=result.run_id)
    options: dict[str, Any] = {"settings": settings, **(source_options or {})}
    if remaining_seconds is not None:
        options.setdefault("remaining_seconds", remaining_seconds)
    options.setdefault("token", HfToken(settings.hf_token_secret, max_age=settings.secret_max_age))
    store.root.mkdir(parents=True, exist_ok=True)
    specs = [registry.get(a) for a in aliases] if aliases else list(registry)
    registry_dir = registry.path.parent if registry.path else None
    for spec in specs:
        if remaining_seconds is not None and remaining_seconds() < settings.warmup_reserve_seconds:
            outcome = ModelResult(
                alias=spec.alias,
                status=ModelStatus.DEFERRED,
                live_revision=store.current_name(spec.alias),
                reason=f"less than {settings.warmup_reserve_seconds} s left in this invocation; the next run continues",
            )
        else:
            observer.model_started(spec.alias, len(specs))
            outcome = warm_one(
                spec, store, settings, registry_dir=registry_dir, observer=observer, source_options=options
            )
        result.models.append(outcome)
        if outcome.removed:
            result.gc[spec.alias] = list(outcome.removed)
        observer.model_done(outcome)
        log = logger.error if outcome.status == ModelStatus.FAILED else logger.info
        log(
            "model warmup finished",
            extra={"model": spec.alias, **outcome.model_dump(exclude_none=True, exclude={"alias"})},
        )
    return result


def warm_one(
    spec: ModelSpec,
    store: ModelStore,
    settings: Settings,
    *,
    registry_dir: Path | None = None,
    observer: Observer | None = None,
    source_options: dict[str, Any] | None = None,
) -> ModelResult:
    """Warm one model; all failures become a FAILED result with the reason."""
    observer = observer or _Quiet()
    if spec.is_remote:
        return _check_remote(spec, settings)
    try:
        settings_for = EXPORT_SETTINGS[spec.task]
        compiler = COMPILERS[spec.task]
    except KeyError:
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.FAILED,
            error="export_failed",
            reason=f"no compiler for task {spec.task.value} in this image",
            live_revision=store.current_name(spec.alias),
        )
    export = settings_for(spec)
    # pinned and already live: answer without touching the source (no Hub call, no 429)
    if spec.revision is not None:
        live = store.find_current(spec.alias, spec.revision, export)
        if live is not None:
            return ModelResult(
                alias=spec.alias,
                status=ModelStatus.CURRENT,
                revision=spec.revision,
                live_revision=live.path.name,
            )
    lock = store.lock(spec.alias, settings.lock_lease_seconds)
    if not lock.try_acquire():
        holder = lock.holder() or {}
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.LOCKED,
            live_revision=store.current_name(spec.alias),
            reason=f"another warmup (pid {holder.get('pid')} on {holder.get('host')}) is writing this model",
        )
    started = time.perf_counter()
    source_dir: Path | None = None
    out_dir: Path | None = None
    options = dict(source_options or {})
    download = getattr(observer, "download", None)
    if callable(download) and "progress" not in options:
        options["progress"] = lambda done, total: download(spec.alias, done, total)
    try:
        store.clean_staging(spec.alias)
        source: Source = open_source(spec, registry_dir=registry_dir, **options)
        revision = source.revision(spec)
        live = store.find_current(spec.alias, revision, export)
        if live is not None:  # another writer finished it while we waited, or an unpinned file source
            return ModelResult(
                alias=spec.alias, status=ModelStatus.CURRENT, revision=revision, live_revision=live.path.name
            )
        complete = store.find_published(spec.alias, revision, export)
        if complete is not None:
            # moved into place by a run that died before the CURRENT swap (or an earlier pin):
            # it is verified, so make it live without touching the source
            observer.step(spec.alias, "publish")
            published = store.activate(spec.alias, complete)
            removed = store.gc(spec.alias, settings.gc_grace_seconds)
            return ModelResult(
                alias=spec.alias,
                status=ModelStatus.PUBLISHED,
                revision=revision,
                live_revision=published.path.name,
                reason=f"re-activated the complete revision {complete} already in the store; nothing fetched",
                removed=removed,
                timings={"total_s": round(time.perf_counter() - started, 3)},
            )
        observer.step(spec.alias, "fetch")
        source_dir = store.new_staging(spec.alias)
        t0 = time.perf_counter()
        fetched = source.fetch(spec, source_dir)
        fetch_s = time.perf_counter() - t0
        lock.renew()
        observer.step(spec.alias, "export")
        out_dir = store.new_staging(spec.alias)
        compiled = compiler(spec, fetched.path, out_dir / "model")
        lock.check()  # fencing: never publish after losing the lock
        observer.step(spec.alias, "publish")
        manifest = Manifest(
            alias=spec.alias,
            repo=spec.repo,
            revision=fetched.revision,
            source=spec.source_uri,
            task=spec.task.value,
            export=compiled.export,
            parity=compiled.parity,
            info={**compiled.info, **({"source": fetched.info} if fetched.info else {})},
            timings={"fetch_s": round(fetch_s, 3), **compiled.timings},
            source_files=fetched.files,
        )
        published = store.publish(out_dir / "model", manifest)
        removed = store.gc(spec.alias, settings.gc_grace_seconds)
        timings = {**manifest.timings, "total_s": round(time.perf_counter() - started, 3)}
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.PUBLISHED,
            revision=fetched.revision,
            live_revision=published.path.name,
            bytes_downloaded=fetched.bytes_downloaded,
            timings=timings,
            parity=compiled.parity,
            removed=removed,
        )
    except LockHeld as exc:
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.LOCKED,
            reason=str(exc),
            live_revision=store.current_name(spec.alias),
        )
    except HflambdaError as exc:
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.FAILED,
            error=exc.code,
            reason=str(exc),
            live_revision=store.current_name(spec.alias),
        )
    except Exception as exc:  # a model's failure must not stop the others
        logger.exception("unexpected warmup failure", extra={"model": spec.alias})
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.FAILED,
            error="internal_error",
            reason=f"{type(exc).__name__}: {exc}",
            live_revision=store.current_name(spec.alias),
        )
    finally:
        for leftover in (source_dir, out_dir):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
        if lock.held:
            lock.release()


def _check_remote(spec: ModelSpec, settings: Settings) -> ModelResult:
    if not REMOTE_CHECKERS:
        return ModelResult(
            alias=spec.alias,
            status=ModelStatus.FAILED,
            error="internal_error",
            reason="no remote checker registered",
        )
    try:
        detail = REMOTE_CHECKERS[0](spec, settings)
        return ModelResult(alias=spec.alias, status=ModelStatus.CHECKED, reason=detail)
    except HflambdaError as exc:
        return ModelResult(alias=spec.alias, status=ModelStatus.FAILED, error=exc.code, reason=str(exc))
