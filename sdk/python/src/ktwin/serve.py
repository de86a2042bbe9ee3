"""Running a twin service under the Knative contract with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from .app import TwinApp
from .config import ServeConfig
from .service import TwinService

#: Seconds in-flight events get to finish after SIGTERM (Knative's default grace is 30 s).
DRAIN_SECONDS = 25


def serve(service: TwinService, config: ServeConfig | None = None, host: str = "0.0.0.0") -> None:
    """Serves ``service`` on ``$PORT`` (configured from the environment unless ``config`` is
    given) until SIGINT or SIGTERM, then stops taking events and lets the in-flight ones
    finish."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config or ServeConfig.from_env()
    app = TwinApp.from_config(service, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=config.port,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=DRAIN_SECONDS,
            log_config=None,
        )
    )
    server.run()
