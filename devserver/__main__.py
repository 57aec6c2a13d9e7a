"""`python -m devserver`: serve function_app's HTTP routes on 127.0.0.1:7071, like `func start`.

With no CIJ target configured (KEY_VAULT_URL, or CIJ_ORG_ID + CIJ_PUBLIC_ENDPOINT, in the
environment or local.settings.json) it also starts the CIJ emulator and points the relay at it.
With --queue it runs Azurite and turns durable delivery on. Function keys are not enforced
locally, as with Azure Functions Core Tools. Settings are checked before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from shared import relay
from shared import settings as settings_module
from shared.events import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from shared.settings import ConfigError

from . import azurite, banner, host, local_settings, queue_trigger
from .destination import configured, unanswered
from .emulator import Emulator
from .errors import StartError, listen_error
from .quiet import server_logger

# Bodies are read up to the route's cap plus one byte: enough for the function to answer 413
# without the server buffering an unbounded upload.
# Header sizes the host's web server (Kestrel) accepts: 32 KiB of headers in all, so one header may be
# far longer than aiohttp's default 8190 bytes (an App Check token the contract does not bound).
HEADER_LIMITS = {"max_field_size": 32 * 1024, "max_line_size": 8 * 1024}
READ_LIMITS = {"/api/events/batch": MAX_BATCH_BYTES}


@functools.cache
def indexed() -> list[Any]:
    """function_app's functions, indexed once: a FunctionApp may be indexed only once per process."""
    import function_app

    return function_app.app.get_functions()


def http_routes(functions: list[Any]) -> list[tuple[str, str, Any]]:
    """(method, path, user function) for every HTTP trigger among the functions."""
    routes = []
    for function in functions:
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
    app = web.Application(handler_args=HEADER_LIMITS)
    for method, path, user_function in http_routes(indexed()):
        app.router.add_route(method, path, adapt(user_function, READ_LIMITS.get(path, MAX_EVENT_BYTES)))
    return app


def check_settings() -> settings_module.Settings:
    """The settings as the relay will read them; StartError with the message the relay would log."""
    try:
        return settings_module.load()
    except ConfigError as exc:
        raise StartError(f"relay settings invalid: {exc}") from None


async def listen(runner: web.AppRunner, host: str, port: int, what: str, option: str) -> int:
    """Serve `runner` on host:port; the bound port, or StartError for an address it cannot use."""
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
    except OSError as exc:
        raise listen_error(exc, what, host, port, option) from None
    return runner.addresses[-1][1]


async def start_emulator(stack: contextlib.AsyncExitStack, port: int) -> str:
    """The CIJ emulator on loopback (reachable by the relay whatever --host is); its URL."""

    def show(event: dict[str, Any]) -> None:
        print(
            f"CIJ emulator: 202 for TrackingId={event['TrackingId']} "
            f"PushNotificationStatus={event['PushNotificationStatus']}",
            flush=True,
        )

    def changed(emulator: Emulator) -> None:
        print(f"CIJ emulator: {'down, answering 503' if emulator.down else 'back up'}", flush=True)

    org_id = str(uuid.uuid4())
    runner = web.AppRunner(Emulator(org_id, show, changed).app(), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    bound = await listen(runner, "127.0.0.1", port, "the CIJ emulator", "--emulator-port (0: any free port)")
    url = f"http://127.0.0.1:{bound}/"
    os.environ.update(
        CIJ_ORG_ID=org_id,
        CIJ_PUBLIC_ENDPOINT=url,
        # The emulator's host is allowed alongside any patterns already set.
        CIJ_ALLOWED_HOSTS=",".join(
            filter(None, (os.environ.get("CIJ_ALLOWED_HOSTS", "").strip(), "127.0.0.1"))
        ),
    )
    return url


# With --queue, unless set otherwise: a failed redelivery is retried after 30 s rather than host.json's
# 5 minutes, and an empty queue is polled at least every 5 s, so that an outage can be watched end to
# end in a minute. Set as an app setting overrides host.json in Azure.
DEMO_QUEUE_OPTIONS = {
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:30",
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:05",
    # An event CIJ cannot take is stored again for 30 s (in Azure: from a minute, doubling, up to 30 min).
    "REDELIVERY_MAX_DELAY_MINUTES": "0.5",
}


async def start_queue(stack: contextlib.AsyncExitStack, queue_name: str) -> list[str]:
    """Azurite with the relay's queues, durable delivery turned on and the queue trigger running;
    the banner's lines."""
    connection = await stack.enter_async_context(azurite.queue_service(queue_name))
    replaced = os.environ.pop("AzureWebJobsStorage__queueServiceUri", None)
    # The host resolves %DELIVERY_QUEUE_NAME% itself: the setting is set even when it keeps its default.
    os.environ.update(
        DELIVERY_FALLBACK="queue", AzureWebJobsStorage=connection, DELIVERY_QUEUE_NAME=queue_name
    )
    for name, value in DEMO_QUEUE_OPTIONS.items():
        os.environ.setdefault(name, value)
    try:
        opts = queue_trigger.options()
    except ValueError as exc:
        raise StartError(
            f"host.json extensions.queues (or its AzureFunctionsJobHost__ override): {exc}"
        ) from None
    try:
        triggers = await stack.enter_async_context(queue_trigger.running(indexed(), opts))
    except queue_trigger.UnresolvedSetting as exc:
        raise StartError(f"queue trigger: {exc}") from None
    port = connection.split("QueueEndpoint=http://127.0.0.1:", 1)[1].split("/", 1)[0]
    lines = [
        f"Durable delivery on: events CIJ cannot take are queued on {queue_name} in Azurite "
        f"(127.0.0.1:{port}, in memory; poison queue {queue_name}-poison)",
    ]
    if replaced:
        lines.append("  (AzureWebJobsStorage__queueServiceUri is ignored: --queue uses Azurite)")
    retry = check_settings().redelivery_max_delay
    lines.append(
        f"  queue trigger: {', '.join(triggers)}, polled at least every {opts.max_polling_interval:g} s; "
        f"an event CIJ cannot take yet is tried again within {retry:g} s (REDELIVERY_MAX_DELAY_MINUTES)"
    )
    relayctl = f".venv/bin/python -m relayctl --connection-string '{connection}'"
    lines.append(f"  look at the queues: {relayctl} status")
    return lines


async def serve(args: argparse.Namespace) -> None:
    """Check the settings, start what the run needs, print the banner, and serve until cancelled."""
    settings_file = Path(args.settings) if args.settings else local_settings.DEFAULT_PATH
    from_file = set(local_settings.apply(local_settings.read(settings_file, required=bool(args.settings))))
    if args.queue:  # checked as they will be: the fallback on, a connection string to come
        os.environ.update(DELIVERY_FALLBACK="queue", AzureWebJobsStorage=azurite.connection_string(0))
    if args.skip_checks:
        return await serve_unchecked(args)
    settings = check_settings()
    emulated = not (settings.key_vault_url or settings.public_endpoint)
    destination = None if emulated else configured(settings, from_file)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(relay.reset)  # the relay's session and clients, once all else stopped
        lines: list[str] = []
        if destination is None:
            lines += banner.emulator_lines(await start_emulator(stack, args.emulator_port))
        else:
            lines.append(f"Events go to {destination.description}")
            problem = await unanswered(destination.url)
            if problem:
                lines.append(f"  warning: nothing answers there ({problem}); events will get 502/503/504")
        if args.queue:
            lines += await start_queue(stack, settings.delivery_queue_name)
        check_settings()
        runner = web.AppRunner(build_app(), access_log=None, logger=server_logger())
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await listen(runner, args.host, args.port, "the relay", "--port")
        lines = [*banner.relay_lines(args.host, args.port), *lines, *banner.try_it(args.host, args.port)]
        print("\n".join(lines), flush=True)  # one write: whoever reads the first line has them all
        await asyncio.Event().wait()


async def serve_unchecked(args: argparse.Namespace) -> None:
    """Serve whatever the settings are, as Azure does: invalid ones make every route answer 503."""
    runner = web.AppRunner(build_app(), access_log=None, logger=server_logger())
    await runner.setup()
    try:
        await listen(runner, args.host, args.port, "the relay", "--port")
        lines = [*banner.relay_lines(args.host, args.port), "Settings not checked (--skip-checks)"]
        print("\n".join(lines), flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await relay.reset()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --help shows every default."""
    parser = argparse.ArgumentParser(
        prog="./scripts/serve",
        description="Serve the relay's HTTP routes locally, as `func start` does. "
        + " ".join(__doc__.split("\n\n")[1].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface"
    )
    parser.add_argument("--port", type=int, default=7071, help="port of the relay")
    parser.add_argument(
        "--emulator-port", type=int, default=7072, help="port of the embedded CIJ emulator (0: any free port)"
    )
    parser.add_argument(
        "--settings",
        metavar="FILE",
        help="a local.settings.json to read instead of the one in the repository root (if any)",
    )
    parser.add_argument(
        "--queue",
        action="store_true",
        help="run Azurite and turn durable delivery on: events CIJ cannot take are queued and redelivered",
    )
    parser.add_argument(
        "--skip-checks",
        action="store_true",
        help="serve with the settings as they are, no emulator, no queue: as in Azure, invalid settings or "
        "a rejected target then make the routes answer 503",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="level of the relay's log lines",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl+C (or SIGTERM); 1 with one line on stderr when it cannot start as asked."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        asyncio.run(_until_stopped(serve(args)))
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _until_stopped(coroutine: Any) -> None:
    """Run `coroutine`, cancelling it on SIGTERM as Ctrl+C does, so that what it started stops."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # pragma: no cover - not on Windows
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise


if __name__ == "__main__":
    sys.exit(main())
