"""`python -m devserver`: serve function_app's HTTP routes on 127.0.0.1:7071, like `func start`.

With no CIJ target configured (KEY_VAULT_URL, or CIJ_ORG_ID + CIJ_PUBLIC_ENDPOINT, in the
environment or local.settings.json) it also starts the CIJ emulator and points the relay at it.
Function keys are not enforced locally, as with Azure Functions Core Tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from shared import settings as settings_module
from shared.events import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from shared.settings import ConfigError

from . import host
from .emulator import Emulator, start

ROOT = Path(__file__).resolve().parent.parent
# Bodies are read up to the route's cap plus one byte: enough for the function to answer 413
# without the server buffering an unbounded upload.
READ_LIMITS = {"/api/events/batch": MAX_BATCH_BYTES}


def load_local_settings(path: Path = ROOT / "local.settings.json") -> None:
    """Copy `Values` from local.settings.json into the environment, as Core Tools does."""
    if path.exists():
        for key, value in json.loads(path.read_text()).get("Values", {}).items():
            os.environ.setdefault(key, str(value))


def http_routes(function_app: Any) -> list[tuple[str, str, Any]]:
    """(method, path, user function) for every HTTP trigger the FunctionApp declares."""
    routes = []
    for function in function_app.get_functions():
        for binding in function.get_bindings():
            if binding.type == "httpTrigger":
                for method in binding.methods:
                    routes.append(
                        (
                            str(getattr(method, "value", method)),
                            f"/api/{binding.route}",
                            function.get_user_function(),
                        )
                    )
    return routes


def adapt(user_function: Any, limit: int) -> Any:
    """An aiohttp handler that calls the function with a func.HttpRequest and answers with what
    the host would send (see devserver.host)."""
    import azure.functions as func

    async def handler(request: web.Request) -> web.StreamResponse:
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=await host.request_body(request, limit),
        )
        return host.to_aiohttp(await user_function(req))

    return handler


def build_app() -> web.Application:
    """The aiohttp application serving function_app's routes."""
    import function_app

    app = web.Application()
    for method, path, user_function in http_routes(function_app.app):
        app.router.add_route(method, path, adapt(user_function, READ_LIMITS.get(path, MAX_EVENT_BYTES)))
    return app


def _print_banner(port: int, emulated: bool) -> None:
    sample = json.dumps(
        {"TrackingId": str(uuid.uuid4()), "DeviceToken": "demo-device-token", "PushNotificationStatus": 1}
    )
    print(
        f"CIJ relay on http://127.0.0.1:{port}/api/events" + (" (CIJ emulator embedded)" if emulated else ""),
        flush=True,
    )
    print("Try it:", flush=True)
    print(
        f"  curl -i -X POST http://127.0.0.1:{port}/api/events "
        f"-H 'Content-Type: application/json' -d '{sample}'",
        flush=True,
    )


async def serve(host: str, port: int, emulator_port: int) -> None:
    """Start the optional emulator and the relay, then run until cancelled."""
    load_local_settings()
    try:  # read as the relay reads them (blank = unset), so both agree on whether a target is set
        configured = settings_module.load()
        emulated = not (configured.key_vault_url or configured.public_endpoint)
    except ConfigError:
        emulated = False  # the relay answers 503 and logs which setting is wrong
    if emulated:
        org_id = str(uuid.uuid4())

        def show(event: dict[str, Any]) -> None:
            print(
                f"CIJ emulator: 202 for TrackingId={event['TrackingId']} "
                f"PushNotificationStatus={event['PushNotificationStatus']}",
                flush=True,
            )

        _, bound = await start(Emulator(org_id, show), host, emulator_port)
        os.environ.update(
            CIJ_ORG_ID=org_id,
            CIJ_PUBLIC_ENDPOINT=f"http://{host}:{bound}/",
            # The emulator's host is allowed alongside any patterns already set.
            CIJ_ALLOWED_HOSTS=",".join(filter(None, (os.environ.get("CIJ_ALLOWED_HOSTS", "").strip(), host))),
        )
        print(f"CIJ emulator on http://{host}:{bound}/ (report: GET /_emulator/received)", flush=True)
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    _print_banner(port, emulated)
    await asyncio.Event().wait()


def main() -> None:
    """Parse the command line and serve until Ctrl+C."""
    parser = argparse.ArgumentParser(
        prog="python -m devserver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--emulator-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args.host, args.port, args.emulator_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
