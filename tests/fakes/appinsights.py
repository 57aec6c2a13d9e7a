"""Application Insights' ingestion endpoint (`POST /v2.1/track`), recording what the exporter sends."""

from __future__ import annotations

import gzip
import json
from typing import Any

from aiohttp import web


class FakeIngestion:
    """Accepts telemetry envelopes (JSON array or newline-delimited, gzip or not) and keeps them."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.app = web.Application()
        self.app.router.add_post("/v2.1/track", self.track)

    async def track(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        try:
            items = json.loads(text)
        except ValueError:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        items = items if isinstance(items, list) else [items]
        self.envelopes.extend(items)
        return web.json_response({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

    def metrics(self) -> list[dict[str, Any]]:
        """Each metric data point sent: name, value, count and its properties (the attributes)."""
        points = []
        for envelope in self.envelopes:
            data = envelope.get("data", {}).get("baseData", {})
            for metric in data.get("metrics", []):
                points.append({**metric, "properties": data.get("properties", {})})
        return points
