"""``GET /health`` (no auth) and ``GET /v1/models``."""

from __future__ import annotations

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool
from functions.predict.schemas import Health, ModelList, ModelState
from hflambda.errors import ModelNotReady

router = APIRouter()


@router.get("/health", response_model=Health, tags=["health"])
def health(pool: Pool) -> Health:
    """Liveness: the process answers. Readiness per model is in ``/v1/models``."""
    specs = [s for s in pool.registry if not s.is_remote]
    ready = sum(1 for s in specs if pool.store.current_name(s.alias) is not None)
    return Health(models_ready=ready, models_total=len(specs))


@router.get("/v1/models", response_model=ModelList, tags=["models"])
def list_models(pool: Pool, _caller: Caller) -> ModelList:
    """Every registry model with its live revision and whether it can serve now."""
    loaded = set(pool.loaded())
    data = []
    for spec in pool.registry:
        if spec.is_remote:
            data.append(ModelState(id=spec.alias, task=spec.task.value, repo=spec.repo, revision=None, ready=True, loaded=False, owned_by=spec.base_url or "remote"))
            continue
        try:
            model = pool.store.resolve(spec.alias, verify_hashes=False)
            data.append(ModelState(id=spec.alias, task=spec.task.value, repo=spec.repo, revision=model.revision, ready=True, loaded=spec.alias in loaded))
        except ModelNotReady as exc:
            data.append(ModelState(id=spec.alias, task=spec.task.value, repo=spec.repo, ready=False, loaded=False, reason=exc.reason))
    return ModelList(data=data)
