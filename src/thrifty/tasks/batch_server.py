"""OpenAI's Batch API on thrifty's server: files, batches, background jobs.

    POST /v1/files                      upload a JSONL file (multipart, purpose=batch)
    GET  /v1/files/{id}                 the file object
    GET  /v1/files/{id}/content         the file's bytes (inputs, outputs, errors)
    POST /v1/batches                    create a batch from an uploaded file; it starts at once
    GET  /v1/batches/{id}               status and request counts
    GET  /v1/batches                    newest first (``limit``, ``after``)
    POST /v1/batches/{id}/cancel        stop it; results so far are kept in the output file

Batches and files live under ``data_dir`` (SQLite in WAL mode plus the files),
so a restarted server resumes unfinished batches where they stopped: either
when the app calls :meth:`BatchService.start` at startup, or on the first
batch request it serves. Bad input is answered with OpenAI's error JSON.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound, ThriftyError
from .batch_format import CHAT_URLS, ParsedBatch, parse_batch
from .batch_job import JobSettings, drain, local_engine
from .batch_store import FAILED, INVALID, OK, BatchStore
from .settings import TasksConfig

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..backend import Backend

Handler = Callable[["Request"], Awaitable["Response"]]


class BatchService:
    """Owns the store, the uploaded files and the running batch jobs."""

    def __init__(self, backend: Backend, data_dir: str, settings: TasksConfig | None = None) -> None:
        self.backend = backend
        self.settings = settings or TasksConfig()
        self.root = Path(data_dir)
        self.files_dir = self.root / "files"
        self.db_path = self.root / "batches.db"
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._store: BatchStore | None = None
        self._started = False

    @property
    def store(self) -> BatchStore:
        """The store, opened (and ``data_dir`` created) on first use."""
        if self._store is None:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            self._store = BatchStore(str(self.db_path))
        return self._store

    async def start(self) -> None:
        """Resume every batch a previous server left unfinished (touches no disk if there were none)."""
        if self._started:
            return
        self._started = True
        if self._store is None and not self.db_path.exists():
            return
        for batch_id in self.store.unfinished():
            self._launch(batch_id)

    async def aclose(self) -> None:
        """Stop running jobs; they stay unfinished in the store and resume next start."""
        jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    def routes(self) -> list[BaseRoute]:
        return _routes(self)

    # -- files -------------------------------------------------------------------

    async def upload(self, request: Request) -> dict[str, Any]:
        import importlib.util

        if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
            raise ThriftyError("file uploads need the python-multipart package: pip install python-multipart")
        from starlette.exceptions import HTTPException

        try:
            form = await request.form()
        except HTTPException as exc:  # Starlette's answer to a malformed multipart body
            raise InvalidRequest(f"the upload is not valid multipart/form-data: {exc.detail}", param="file") from None
        purpose = form.get("purpose")
        upload = form.get("file")
        if purpose != "batch":
            raise InvalidRequest(f"purpose must be 'batch', got {purpose!r}", param="purpose")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("a 'file' part with the JSONL content is required", param="file")
        data = await upload.read()
        return self.add_file(data, upload.filename or "input.jsonl", "batch")

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        store = self.store  # opened first: it creates the files folder
        file_id = "file-" + uuid.uuid4().hex[:24]
        (self.files_dir / file_id).write_bytes(data)
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
                "status_details": None}
        store.add_file(meta)
        return meta

    def file(self, file_id: str) -> dict[str, Any]:
        meta = self.store.file(file_id)
        if meta is None:
            raise NotFound(f"No file with id '{file_id}'.", param="file_id")
        return meta

    def content(self, file_id: str) -> bytes:
        self.file(file_id)
        return (self.files_dir / file_id).read_bytes()

    # -- batches -----------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("'input_file_id' is required", param="input_file_id")
        endpoint = body.get("endpoint")
        if endpoint not in CHAT_URLS:
            raise InvalidRequest(f"endpoint must be /v1/chat/completions, got {endpoint!r}", param="endpoint")
        window = body.get("completion_window", "24h")
        if window != "24h":
            raise InvalidRequest(f"completion_window must be '24h', got {window!r}", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object", param="metadata")
        path = self.files_dir / self.file(file_id)["id"]
        limit = self.settings.max_requests
        parsed = await asyncio.to_thread(_parse_file, path, limit)
        batch_id = "batch_" + uuid.uuid4().hex[:24]
        now = int(time.time())
        data: dict[str, Any] = {
            "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 24 * 3600, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None, "metadata": metadata,
        }
        self.store.create_batch(batch_id, data, parsed)
        self._launch(batch_id)
        return self.view(batch_id)

    def view(self, batch_id: str) -> dict[str, Any]:
        data = self.store.batch(batch_id)
        if data is None:
            raise NotFound(f"No batch with id '{batch_id}'.", param="batch_id")
        counts = self.store.counts(batch_id)
        data["request_counts"] = {k: counts[k] for k in ("total", "completed", "failed")}
        return data

    def listing(self, limit: int, after: str | None) -> dict[str, Any]:
        items = [self.view(b["id"]) for b in self.store.batches(limit=limit + 1, after=after)]
        more = len(items) > limit
        items = items[:limit]
        return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None, "has_more": more}

    def cancel(self, batch_id: str) -> dict[str, Any]:
        data = self.view(batch_id)
        if data["status"] in ("validating", "in_progress"):
            self._update(batch_id, status="cancelling", cancelling_at=int(time.time()))
            job = self.jobs.get(batch_id)
            if job is not None:
                job.cancel()
            else:
                self._launch(batch_id)
        elif data["status"] not in ("cancelling", "cancelled"):
            raise InvalidRequest(f"Cannot cancel a batch that is {data['status']}.", param="batch_id",
                                 status=409)
        return self.view(batch_id)

    # -- running -----------------------------------------------------------------

    def _launch(self, batch_id: str) -> None:
        job = asyncio.get_running_loop().create_task(self._run(batch_id), name=f"batch:{batch_id}")
        self.jobs[batch_id] = job
        job.add_done_callback(lambda _t: self.jobs.pop(batch_id, None))

    async def _run(self, batch_id: str) -> None:
        data = self.store.batch(batch_id) or {}
        if data.get("status") == "cancelling":
            self._finalize(batch_id, cancelled=True)
            return
        if data.get("status") == "validating":
            self._update(batch_id, status="in_progress", in_progress_at=int(time.time()))
        settings = JobSettings(concurrency=self.settings.limit(), model_limits=self.settings.model_limits,
                               retries=self.settings.retries, timeout=self.settings.timeout)
        try:
            await drain(self.store, batch_id, local_engine(self.backend, settings))
        except asyncio.CancelledError:
            current = self.store.batch(batch_id) or {}
            if current.get("status") == "cancelling":
                self._finalize(batch_id, cancelled=True)  # cancelled by a client, not by shutdown
            raise
        self._finalize(batch_id, cancelled=False)

    def _finalize(self, batch_id: str, *, cancelled: bool) -> None:
        now = int(time.time())
        if not cancelled:
            self._update(batch_id, status="finalizing", finalizing_at=now)
        out = b"".join(self.store.results(batch_id, OK))
        err = b"".join(self.store.results(batch_id, INVALID, FAILED))
        changes: dict[str, Any] = {"output_file_id": self.add_file(out, f"{batch_id}_output.jsonl",
                                                                     "batch_output")["id"]}
        if err:
            changes["error_file_id"] = self.add_file(err, f"{batch_id}_error.jsonl", "batch_output")["id"]
        if cancelled:
            changes.update(status="cancelled", cancelled_at=now)
        else:
            changes.update(status="completed", completed_at=now)
        self._update(batch_id, **changes)

    def _update(self, batch_id: str, **changes: Any) -> None:
        data = self.store.batch(batch_id)
        if data is not None:
            self.store.save_batch({**data, **changes})


def batch_routes(backend: Backend, data_dir: str, settings: TasksConfig | None = None) -> list[BaseRoute]:
    """The Batch API routes over ``backend``; state and files under ``data_dir``."""
    return BatchService(backend, data_dir, settings).routes()


def _routes(service: BatchService) -> list[BaseRoute]:
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def api(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
        async def handle(request: Request) -> Response:
            await service.start()
            try:
                result = await fn(request)
            except ThriftyError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers())
            return result if isinstance(result, Response) else JSONResponse(result)

        return handle

    async def upload(request: Request) -> Any:
        return await service.upload(request)

    async def file(request: Request) -> Any:
        return service.file(request.path_params["file_id"])

    async def content(request: Request) -> Any:
        data = service.content(request.path_params["file_id"])
        return Response(data, media_type="application/jsonl")

    async def create(request: Request) -> Any:
        return await service.create(await _json_object(request))

    async def get(request: Request) -> Any:
        return service.view(request.path_params["batch_id"])

    async def listing(request: Request) -> Any:
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise InvalidRequest(f"limit must be an integer from 1 to 100, got {raw!r}", param="limit")
        return service.listing(int(raw), request.query_params.get("after"))

    async def cancel(request: Request) -> Any:
        return service.cancel(request.path_params["batch_id"])

    return [
        Route("/v1/files", api(upload), methods=["POST"]),
        Route("/v1/files/{file_id}", api(file), methods=["GET"]),
        Route("/v1/files/{file_id}/content", api(content), methods=["GET"]),
        Route("/v1/batches", api(create), methods=["POST"]),
        Route("/v1/batches", api(listing), methods=["GET"]),
        Route("/v1/batches/{batch_id}", api(get), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", api(cancel), methods=["POST"]),
    ]


def _parse_file(path: Path, limit: int) -> ParsedBatch:
    """Read and check a batch input file (off the event loop: files can be large)."""
    return parse_batch(path.read_bytes().splitlines(), max_requests=limit, limit_name="tasks.batch.max_requests")


async def _json_object(request: Request) -> dict[str, Any]:
    import orjson

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body
