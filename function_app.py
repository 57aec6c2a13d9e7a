"""Azure Functions entry point: the routes and thin adapters onto the relay core in `shared/`."""

from collections.abc import Awaitable, Callable

import azure.functions as func

from shared import relay
from shared.responses import Reply, from_error
from shared.settings import ConfigError

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


async def _answer(call: Callable[[relay.Relay], Awaitable[Reply]]) -> func.HttpResponse:
    try:
        reply = await call(relay.current())
    except ConfigError as exc:
        reply = from_error(exc)
    return func.HttpResponse(
        reply.body_bytes(),
        status_code=reply.status,
        headers=reply.headers,
        mimetype=reply.content_type,
        charset="utf-8",
    )


@app.route(route="events", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def events(req: func.HttpRequest) -> func.HttpResponse:
    """Report one push-notification open to CIJ."""
    return await _answer(lambda r: r.handle_event(req.get_body(), req.headers.get("content-type")))


@app.route(route="events/batch", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def events_batch(req: func.HttpRequest) -> func.HttpResponse:
    """Report up to 100 opens (e.g. queued while the device was offline); per-event results."""
    return await _answer(lambda r: r.handle_batch(req.get_body(), req.headers.get("content-type")))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when the CIJ target can be resolved, 503 otherwise; reveals nothing else."""
    return await _answer(lambda r: r.health())


@app.queue_trigger(arg_name="msg", queue_name="%DELIVERY_QUEUE_NAME%", connection="AzureWebJobsStorage")
async def redeliver(msg: func.QueueMessage) -> None:
    """Deliver an event stored while CIJ was unavailable (DELIVERY_FALLBACK=queue)."""
    await relay.current().redeliver(msg.get_body())
