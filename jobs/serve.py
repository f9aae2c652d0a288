"""Live recommendations over HTTP: the champion model, the latest build, the nightly table.

    python jobs/serve.py --data output/demo --table output/demo/recommendations [--port 8000]

Loads ``models:/<name>@champion`` from the MLflow registry (pickle-free, as scoring does), the
item vocabulary and titles and every user's history from the current build of ``--data``, and
the nightly Delta table as the cache behind the model. Then serves, on loopback unless
``--host`` says otherwise:

    POST /v1/recommendations                 {"user_id": "u10", "events": [{"item_id": "i302",
                                             "event_type": "view"}], "k": 10}
    GET  /v1/users/{user_id}/recommendations the nightly row
    GET  /healthz  /readyz  /metrics  /docs  and / (a page to try it)

Events posted for a user extend their history for the following requests. In the background,
every ``--poll-seconds``, it follows the ``champion`` alias (a new version loads beside the old
one and swaps in when ready; one that fails to load is logged and the old one keeps serving),
a newer build of ``--data`` and a newer version of the nightly table. With no model it answers
from the nightly table, then from the most popular items, and ``/readyz`` says so.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass

from seqrec import config, errors
from seqrec.serve import online

DESCRIPTION = "Serve live recommendations over HTTP (FastAPI on uvicorn)."


@dataclass(frozen=True)
class ServeConfig(online.Settings):
    """The service's settings, and where it listens."""

    host: str = config.option("127.0.0.1", help="address to listen on (0.0.0.0: every one)")
    port: int = config.option(8000, help="port to listen on")

    def check(self) -> str | None:
        if not 0 < self.port < 65536:
            return f"--port {self.port}: give a port between 1 and 65535"
        return super().check()


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise errors.UsageError(
                f"cannot listen on {host}:{port} ({error.strerror}): another process holds "
                "the port; pass --port with a free one."
            ) from error


def load_service(cfg: ServeConfig) -> online.Service:
    """The service with its build, table and model loaded; a missing build is a user error."""
    from seqrec.io import registry

    os.environ.setdefault("MLFLOW_TRACKING_URI", registry.tracking_uri())
    try:
        return online.Service(cfg)
    except FileNotFoundError as error:
        raise errors.NotFoundError(
            f"--data {cfg.data}: {error}. Build it first with jobs/build_sequences.py."
        ) from error


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(ServeConfig, argv, prog="serve.py", description=DESCRIPTION)
    logging.basicConfig(
        level=logging.WARNING, format="[serve] %(asctime)s %(message)s", stream=sys.stderr
    )
    _check_port(cfg.host, cfg.port)
    service = load_service(cfg)

    import uvicorn

    from seqrec.serve.api import create_app

    def ready(svc: online.Service) -> None:
        model = svc.model
        where = f"http://{cfg.host}:{cfg.port}"
        serving = f"model {model.name} v{model.version}" if model else svc.degraded()[0]
        print(
            f"[serve] {svc.histories.users} users, {len(svc.catalogue.item_idx)} items from "
            f"{svc.build}; {serving}\n[serve] listening on {where} (page {where}/, API docs "
            f"{where}/docs); Ctrl-C stops",
            flush=True,
        )

    app = create_app(lambda: service, ready)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    errors.run(main)
