"""``GET /health`` (no auth), ``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool
from functions.predict.errors import responses
from functions.predict.schemas import Health, ModelList, ModelState
from hflambda.engines import ModelPool
from hflambda.errors import ModelNotReady
from hflambda.registry import ModelSpec

router = APIRouter()


# 503 the model store cannot be read (not mounted, no permission): not a model that is merely not warmed
@router.get(
    "/health", operation_id="get_health", response_model=Health, tags=["health"], responses=responses(503)
)
def health(pool: Pool) -> Health:
    """Liveness: the process answers and can read its model store (503 with the reason when
    it cannot). Readiness per model is in ``/v1/models``."""
    specs = [s for s in pool.registry if not s.is_remote]
    ready = sum(1 for s in specs if pool.store.current_name(s.alias) is not None)
    return Health(models_ready=ready, models_total=len(specs))


def _created(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0


def model_state(pool: ModelPool, spec: ModelSpec, loaded: set[str]) -> ModelState:
    """One registry model as OpenAI's model object, with its live revision and readiness."""
    if spec.is_remote:
        return ModelState(
            id=spec.alias,
            task=spec.task.value,
            repo=spec.repo,
            revision=None,
            ready=True,
            loaded=False,
            owned_by=spec.base_url or "remote",
        )
    try:
        model = pool.store.resolve(spec.alias, verify_hashes=False)
    except ModelNotReady as exc:
        return ModelState(
            id=spec.alias, task=spec.task.value, repo=spec.repo, ready=False, loaded=False, reason=exc.reason
        )
    return ModelState(
        id=spec.alias,
        created=_created(model.manifest.created_at),
        task=spec.task.value,
        repo=spec.repo,
        revision=model.revision,
        ready=True,
        loaded=spec.alias in loaded,
    )


# 401/503 Caller (a model that is not ready is listed with ready=false, not an error)
@router.get(
    "/v1/models",
    operation_id="list_models",
    response_model=ModelList,
    tags=["models"],
    responses=responses(401, 503),
)
def list_models(pool: Pool, _caller: Caller) -> ModelList:
    """Every registry model with its live revision and whether it can serve now."""
    loaded = set(pool.loaded())
    return ModelList(data=[model_state(pool, spec, loaded) for spec in pool.registry])


# 401/503 Caller; 404 unknown alias
@router.get(
    "/v1/models/{model_id}",
    operation_id="retrieve_model",
    response_model=ModelState,
    tags=["models"],
    responses=responses(401, 404, 503),
)
def retrieve_model(model_id: str, pool: Pool, _caller: Caller) -> ModelState:
    """One registry model (404 ``model_not_found`` listing the known aliases)."""
    return model_state(pool, pool.registry.get(model_id), set(pool.loaded()))
