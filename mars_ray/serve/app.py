"""The HTTP service: a FastAPI ingress in front of the model deployment.

``build(settings)`` composes the Serve application used by `mars-ray serve`,
``build_app`` is the same for `serve run configs/serve.yaml` (its ``args`` are
``ServeSettings``). The routes and their errors are ``routes.make_api``'s; each
ingress replica builds that app with its own settings (Serve's
``__serve_build_asgi_app__``), so that the body limit is the configured one and the
same app runs in process in tests, in front of a stub model.
"""

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from mars_ray.serve.model_server import LMMModel
from mars_ray.serve.routes import make_api
from mars_ray.serve.settings import (
    API_DEPLOYMENT,
    MODEL_DEPLOYMENT,
    ServeSettings,
    parse_settings,
)


@serve.ingress()
class TrajectoryAPI:
    """The ingress deployment: a ``routes.TrajectoryService`` whose model is the
    ``LMMModel`` deployment, called through its handle."""

    def __init__(self, model: DeploymentHandle, settings: dict[str, Any]) -> None:
        self.model = model
        self.settings = ServeSettings.model_validate(settings)
        self.lmm = {"backend": "serve", "serve_app": serve.get_replica_context().app_name}
        self._model_info: dict[str, Any] | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return make_api(self)

    async def model_info(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = await self.model.info.remote()
        return self._model_info

    async def model_stats(self) -> dict[str, Any]:
        return await self.model.stats.remote()


def build_model(settings: ServeSettings) -> serve.Application:
    """The model deployment alone (what simulations with ``backend: serve`` need)."""
    m, a = settings.model, settings.api
    return serve.deployment(
        LMMModel,
        name=MODEL_DEPLOYMENT,
        num_replicas=1,  # sessions (KV-cache rows) live in the replica that opened them
        max_ongoing_requests=m.max_ongoing_requests,
        max_queued_requests=m.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": a.retry_after_s},
        user_config={
            "max_batch_size": m.max_batch_size,
            "batch_wait_timeout_s": m.batch_wait_timeout_s,
        },
        ray_actor_options={"num_cpus": 0},
        graceful_shutdown_timeout_s=5,
        logging_config={"enable_access_log": False},  # one line per step would flood the log
    ).bind(m.model_dump())


def build(settings: ServeSettings) -> serve.Application:
    """The Serve application: the API deployment bound to the model deployment."""
    a = settings.api
    ingress = serve.deployment(
        TrajectoryAPI,
        name=API_DEPLOYMENT,
        num_replicas=a.num_replicas,
        max_ongoing_requests=a.max_ongoing_requests,
        max_queued_requests=a.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": a.retry_after_s},
        ray_actor_options={"num_cpus": 0},
        graceful_shutdown_timeout_s=5,
    )
    return ingress.bind(build_model(settings), settings.model_dump())


def build_app(args: dict[str, Any]) -> serve.Application:
    """Builder for `serve run configs/serve.yaml`: ``args`` are ServeSettings."""
    return build(parse_settings(args, "serve config args"))
