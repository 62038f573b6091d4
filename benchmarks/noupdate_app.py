"""The baseline for the fleet benchmark: the same stack (uvicorn, FastAPI, Railcar's Omaha
codec) answering every request with a constant ``noupdate`` and touching no database."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from railcar.omaha.codec import encode_response, parse_request
from railcar.omaha.errors import OmahaError
from railcar.omaha.model import AppResponse, UpdateCheck
from railcar.omaha.model import Response as OmahaResponse

app = FastAPI()


@app.post("/v1/update/")
async def omaha(request: Request) -> Response:
    try:
        parsed = parse_request(await request.body())
    except OmahaError as exc:
        return Response(exc.message, 400)
    answer = OmahaResponse(
        tuple(
            AppResponse(
                a.appid,
                ping=a.ping,
                events=len(a.events),
                updatecheck=UpdateCheck("noupdate") if a.updatecheck else None,
            )
            for a in parsed.apps
        )
    )
    return Response(encode_response(answer), media_type="text/xml")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
