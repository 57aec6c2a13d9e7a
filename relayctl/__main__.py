"""`python -m relayctl status|peek|replay`: inspect the redelivery queues and replay events that were
given up on, with the operator's Azure login (DefaultAzureCredential) or a connection string (Azurite).

    python -m relayctl --account stxxxx status
    python -m relayctl --account stxxxx peek
    python -m relayctl --account stxxxx replay --dry-run
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from relayctl.messages import Stored, read
from shared.backlog import queue_names

PEEK_LIMIT = 32  # the most messages the queue service returns to one peek
VISIBILITY_SECONDS = 60  # how long a message being replayed stays hidden from other readers


def connect(args: argparse.Namespace) -> Any:
    """A QueueServiceClient: a connection string, else a queue service URL (or an account name) with
    DefaultAzureCredential (`az login`, a managed identity or the environment). Without arguments,
    the relay's own settings (AzureWebJobsStorage__queueServiceUri, then AzureWebJobsStorage)."""
    from azure.storage.queue import QueueServiceClient

    url = args.queue_service_url or (
        f"https://{args.account}.queue.core.windows.net" if args.account else None
    )
    connection_string = args.connection_string
    if not url and not connection_string:
        url = os.environ.get("AzureWebJobsStorage__queueServiceUri")
        connection_string = None if url else os.environ.get("AzureWebJobsStorage")
    if connection_string:
        return QueueServiceClient.from_connection_string(connection_string)
    if not url:
        raise SystemExit("relayctl: give --account, --queue-service-url or --connection-string")
    from azure.identity import DefaultAzureCredential

    return QueueServiceClient(url, credential=DefaultAzureCredential())


def _age(inserted: datetime | None, now: datetime) -> str:
    if inserted is None:
        return "-"
    seconds = max(0, int((now - inserted).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (
        f"{days}d{hours:02d}h"
        if days
        else f"{hours}h{rest // 60:02d}m"
        if hours
        else f"{rest // 60}m{rest % 60:02d}s"
    )


def status(service: Any, pending: str, out: TextIO, as_json: bool) -> int:
    """Depth and age of the oldest message of both queues."""
    from azure.core.exceptions import ResourceNotFoundError

    now, rows = datetime.now(UTC), {}
    for role, name in queue_names(pending).items():
        client = service.get_queue_client(name)
        try:
            depth = client.get_queue_properties().approximate_message_count or 0
            oldest = next(iter(client.peek_messages(max_messages=1)), None)
        except ResourceNotFoundError:
            depth, oldest = 0, None
        inserted = oldest.inserted_on if oldest is not None else None
        rows[role] = {
            "queue": name,
            "messages": depth,
            "oldest": inserted.isoformat() if inserted else None,
            "oldestAgeSeconds": int((now - inserted).total_seconds()) if inserted else None,
        }
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
    else:
        out.write(f"{'queue':<9} {'name':<40} {'messages':>8}  oldest\n")
        for role, row in rows.items():
            age = _age(datetime.fromisoformat(row["oldest"]) if row["oldest"] else None, now)
            out.write(f"{role:<9} {row['queue']:<40} {row['messages']:>8}  {age}\n")
    return 0


def _describe(message: Any, stored: Stored, now: datetime) -> dict[str, Any]:
    return {
        "id": message.id,
        "inserted": message.inserted_on.isoformat() if message.inserted_on else None,
        "age": _age(message.inserted_on, now),
        "dequeueCount": message.dequeue_count,
        "reason": stored.reason,
        "trackingId": stored.tracking_id,
        "device": stored.device,
        "receivedAt": stored.received_at,
        "replayable": stored.original is not None,
    }


def peek(service: Any, pending: str, limit: int, out: TextIO, as_json: bool) -> int:
    """The poison queue's first messages, with why each was given up on; nothing is changed."""
    name, now = queue_names(pending)["poison"], datetime.now(UTC)
    messages = _peek(service.get_queue_client(name), limit)
    described = [_describe(m, read(m.content), now) for m in messages]
    if as_json:
        json.dump(described, out, indent=2)
        out.write("\n")
        return 0
    if not described:
        out.write(f"{name}: empty\n")
    for item in described:
        out.write(
            f"{item['id']}  age {item['age']}  tries {item['dequeueCount']}  "
            f"tracking_id={item['trackingId']} device={item['device']} received_at={item['receivedAt']}\n"
            f"    reason: {item['reason'] or 'not recorded (given up on by the Functions host)'}"
            f"{'' if item['replayable'] else '  [not a relay event: will not be replayed]'}\n"
        )
    return 0


def replay(service: Any, pending: str, limit: int | None, dry_run: bool, out: TextIO) -> int:
    """Move poison messages back onto the pending queue as the relay stored them, once per event: a
    copy of an event already replayed in this run, or already waiting on the pending queue, is
    removed instead. Messages that are not relay events stay. With dry_run nothing changes (only
    the first 32 poison messages are looked at)."""
    names = queue_names(pending)
    poison, target = service.get_queue_client(names["poison"]), service.get_queue_client(names["pending"])
    seen = {read(m.content).key for m in _peek(target)} - {(None, None, None)}
    counts = {"replay": 0, "drop": 0, "skip": 0}
    left: list[Any] = []  # received but staying on the poison queue: made visible again at the end
    handled: set[str] = set()
    while limit is None or counts["replay"] + counts["drop"] < limit:
        batch = [m for m in _next_batch(poison, dry_run) if m.id not in handled]
        if not batch:
            break
        handled.update(m.id for m in batch)
        for message in batch:
            if limit is not None and counts["replay"] + counts["drop"] >= limit:
                left.append(message)
                continue
            stored = read(message.content)
            if stored.original is None:
                action, note = "skip", "not a relay event (left on the poison queue)"
                left.append(message)
            elif stored.key in seen:
                action, note = (
                    "drop",
                    f"tracking_id={stored.tracking_id} device={stored.device} already queued",
                )
            else:
                action, note = "replay", f"tracking_id={stored.tracking_id} device={stored.device}"
                seen.add(stored.key)
            counts[action] += 1
            out.write(f"{'would ' if dry_run else ''}{action} {message.id}: {note}\n")
            if dry_run or action == "skip":
                continue
            if action == "replay":
                # Base64, as the relay writes and the queue trigger reads (host.json messageEncoding).
                target.send_message(base64.b64encode(stored.original or b"").decode(), time_to_live=-1)
            poison.delete_message(message)
        if dry_run:
            break  # a peek cannot page: one look at the front of the queue
    for message in left if not dry_run else ():
        poison.update_message(message, visibility_timeout=0)
    out.write(
        f"{'would replay' if dry_run else 'replayed'} {counts['replay']}, "
        f"duplicates {counts['drop']}, not replayable {counts['skip']}\n"
    )
    return 0


def _peek(client: Any, limit: int = PEEK_LIMIT) -> list[Any]:
    """Up to `limit` (at most 32) messages from the front of the queue, unchanged; none if it is missing."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(client.peek_messages(max_messages=min(limit, PEEK_LIMIT)))
    except ResourceNotFoundError:
        return []


def _next_batch(client: Any, dry_run: bool) -> list[Any]:
    """Up to 32 poison messages: peeked for a dry run, otherwise received (hidden while handled)."""
    from azure.core.exceptions import ResourceNotFoundError

    if dry_run:
        return _peek(client)
    try:
        return list(client.receive_messages(max_messages=PEEK_LIMIT, visibility_timeout=VISIBILITY_SECONDS))
    except ResourceNotFoundError:
        return []  # no poison queue yet: nothing was ever given up on


def parser() -> argparse.ArgumentParser:
    """The command line."""
    env = os.environ
    p = argparse.ArgumentParser(
        prog="python -m relayctl",
        description="Inspect the relay's redelivery queues and replay events given up on.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--account", help="storage account name (azd output AZURE_STORAGE_ACCOUNT_NAME)")
    where.add_argument("--queue-service-url", help="queue service URL, used with your Azure login")
    where.add_argument("--connection-string", help="storage connection string (Azurite, local runs)")
    p.add_argument(
        "--queue", default=env.get("DELIVERY_QUEUE_NAME") or "pending-events", help="the pending queue"
    )
    commands = p.add_subparsers(dest="command", required=True)
    s = commands.add_parser("status", help="messages and oldest message age of both queues")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    k = commands.add_parser("peek", help="poison messages with their reason (nothing changes)")
    k.add_argument("--max", type=int, default=PEEK_LIMIT, help=f"messages to show (at most {PEEK_LIMIT})")
    k.add_argument("--json", action="store_true", help="machine-readable output")
    r = commands.add_parser("replay", help="move poison messages back to the pending queue, once per event")
    r.add_argument("--dry-run", action="store_true", help="show what would be replayed; change nothing")
    r.add_argument("--max", type=int, default=None, help="replay at most this many")
    return p


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run one command; the exit status is 0 on success."""
    args = parser().parse_args(argv)
    with connect(args) as service:
        if args.command == "status":
            return status(service, args.queue, out, args.json)
        if args.command == "peek":
            return peek(service, args.queue, args.max, out, args.json)
        return replay(service, args.queue, args.max, args.dry_run, out)


if __name__ == "__main__":
    sys.exit(main())
