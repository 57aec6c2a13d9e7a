"""Azure Functions entry point: the routes and thin adapters onto the relay core in `shared/`."""

from collections.abc import Awaitable, Callable

import azure.functions as func

from shared import backlog, relay, telemetry
from shared.metrics import counted
from shared.responses import ACCEPTED, Reply

telemetry.configure()  # metrics to Application Insights, when it is configured

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _response(reply: Reply) -> func.HttpResponse:
    """A relay Reply as the host's response. Content-Type is in the headers, so the host, which
    adds one when it is missing, only reads the response."""
    return func.HttpResponse(
        reply.body_bytes(),
        status_code=reply.status,
        headers={"Content-Type": reply.content_type, **reply.headers},
        mimetype=reply.content_type,
        charset="utf-8",
    )


# The answer to nearly every request, the same each time: built once and shared.
_ACCEPTED = _response(ACCEPTED)


def _http(reply: Reply) -> func.HttpResponse:
    """The host's response for a Reply."""
    return _ACCEPTED if reply is ACCEPTED else _response(reply)


# Each route answers a bug with 503 + Retry-After (relay.internal_error): no exception escapes to
# the host, which would answer a bare 500 and log the exception's message.


async def _answered(route: str, handle: Callable[[], Awaitable[Reply]]) -> func.HttpResponse:
    """The answer `handle` gives, counted for `route`; a bug answers 503 + Retry-After."""
    try:
        reply = await handle()
    except Exception as exc:
        reply = relay.internal_error(exc)
    return _http(counted(route, reply))


@app.route(route="events", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def events(req: func.HttpRequest) -> func.HttpResponse:
    """Report one push-notification open to CIJ."""
    headers = req.headers
    return await _answered(
        "events",
        lambda: relay.current().handle_event(
            req.get_body(), headers.get("content-type"), headers.get("x-firebase-appcheck")
        ),
    )


@app.route(route="events/batch", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def events_batch(req: func.HttpRequest) -> func.HttpResponse:
    """Report up to 100 opens (e.g. queued while the device was offline); per-event results."""
    headers = req.headers
    return await _answered(
        "batch",
        lambda: relay.current().handle_batch(
            req.get_body(), headers.get("content-type"), headers.get("x-firebase-appcheck")
        ),
    )


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when the CIJ target can be resolved, 503 otherwise; reveals nothing else."""
    try:
        reply = await relay.current().health()
    except Exception as exc:
        reply = relay.internal_error(exc)
    return _http(reply)


@app.queue_trigger(arg_name="msg", queue_name="%DELIVERY_QUEUE_NAME%", connection="AzureWebJobsStorage")
async def redeliver(msg: func.QueueMessage) -> None:
    """Deliver an event stored while CIJ was unavailable (DELIVERY_FALLBACK=queue)."""
    await relay.current().redeliver(msg.get_body())


@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=False)
async def queue_depth(timer: func.TimerRequest) -> None:
    """Every five minutes: events awaiting redelivery and events given up on (DELIVERY_FALLBACK=queue)."""
    await backlog.report()
