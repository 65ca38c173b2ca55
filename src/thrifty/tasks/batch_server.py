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

Every route authenticates through the server's :class:`Access`. Each file and
batch records the id of the key that created it; a client key sees only its
own (another key's objects answer 404, as if they did not exist), an admin key
sees all. JSON bodies are bounded by ``server.max_body_bytes`` and
``max_json_depth``; uploads by ``server.max_file_bytes``, enforced while the
upload streams to disk.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ServerConfig
from ..errors import InvalidRequest, NotFound, PayloadTooLarge, StorageUnavailable, ThriftyError
from ..server.access import OPEN, Access, Caller, bounded_receive, read_json
from ..storage import cause
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
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields, beyond the file itself


class BatchService:
    """Owns the store, the uploaded files and the running batch jobs."""

    def __init__(
        self,
        backend: Backend,
        data_dir: str,
        settings: TasksConfig | None = None,
        *,
        access: Access | None = None,
        resume: bool = True,
    ) -> None:
        self.backend = backend
        # Resume a previous run's unfinished batches here? One process of several
        # (`thrifty serve --workers N`) does it, so no batch runs twice.
        self.resume = resume
        self.settings = settings or TasksConfig()
        self.access = access or Access(ServerConfig())
        self.limits = self.access.server
        self.root = Path(data_dir)
        self.files_dir = self.root / "files"
        self.db_path = self.root / "batches.db"
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._store: BatchStore | None = None
        self._started = False
        self._files_ready = False

    @property
    def store(self) -> BatchStore:
        """The store, opened (and ``data_dir`` created) on first use.

        Raises StorageUnavailable (503, naming the cause) while it cannot be opened.
        """
        if self._store is None:
            self._store = BatchStore(str(self.db_path))  # never raises: retries in the background
        store = self._store
        store.ensure_open()
        if not self._files_ready:
            try:
                self.files_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable(f"The batch files folder cannot be created: {cause(exc)}.") from exc
            self._files_ready = True
        return store

    def degraded(self) -> list[str]:
        """Why batches are unavailable now (empty when they are not, or were never used)."""
        return self._store.degraded() if self._store is not None else []

    async def start(self) -> None:
        """Resume every batch a previous server left unfinished (touches no disk if there were none).

        A store that cannot be opened now is logged (once, by the store) and the
        resume is tried again on the next batch request.
        """
        if self._started:
            return
        if not self.resume or (self._store is None and not self.db_path.exists()):
            self._started = True
            return
        try:
            unfinished = self.store.unfinished()
        except StorageUnavailable:
            return
        self._started = True
        for batch_id in unfinished:
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

    async def upload(self, request: Request, caller: Caller = OPEN) -> dict[str, Any]:
        """``POST /v1/files``: the ``file`` part streams to disk, bounded by ``server.max_file_bytes``."""
        import importlib.util

        from starlette.requests import Request as FormRequest

        if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
            raise ThriftyError("file uploads need the python-multipart package: pip install python-multipart")
        limit = self.limits.max_file_bytes
        bounded = FormRequest(request.scope, bounded_receive(request, limit + FORM_OVERHEAD))
        form = await _form(bounded)
        try:
            purpose = form.get("purpose")
            upload = form.get("file")
            if purpose != "batch":
                raise InvalidRequest(f"purpose must be 'batch', got {purpose!r}", param="purpose")
            if upload is None or isinstance(upload, str):
                raise InvalidRequest("a 'file' part with the JSONL content is required", param="file")
            store = self.store  # opened first: it creates the files folder
            file_id = "file-" + uuid.uuid4().hex[:24]
            path = self.files_dir / file_id
            size = await asyncio.to_thread(_copy_upload, upload.file, path)
            if size > limit:
                path.unlink(missing_ok=True)
                raise PayloadTooLarge(
                    f"The file is {size} bytes; the limit is {limit} (server.max_file_bytes).", param="file"
                )
            return self._file_meta(
                store, file_id, size, upload.filename or "input.jsonl", "batch", caller.key_id
            )
        finally:
            await form.close()

    def add_file(self, data: bytes, filename: str, purpose: str, owner: str = "") -> dict[str, Any]:
        store = self.store  # opened first: it creates the files folder
        file_id = "file-" + uuid.uuid4().hex[:24]
        (self.files_dir / file_id).write_bytes(data)
        return self._file_meta(store, file_id, len(data), filename, purpose, owner)

    @staticmethod
    def _file_meta(
        store: BatchStore, file_id: str, size: int, filename: str, purpose: str, owner: str
    ) -> dict[str, Any]:
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        store.add_file(meta, owner)
        return meta

    def file(self, file_id: str, caller: Caller = OPEN) -> dict[str, Any]:
        meta = self.store.file(file_id)
        if meta is None or not caller.owns(self.store.file_owner(file_id)):
            raise NotFound(f"No file with id '{file_id}'.", param="file_id")
        return meta

    def content_path(self, file_id: str, caller: Caller = OPEN) -> Path:
        self.file(file_id, caller)
        return self.files_dir / file_id

    def content(self, file_id: str, caller: Caller = OPEN) -> bytes:
        return self.content_path(file_id, caller).read_bytes()

    # -- batches -----------------------------------------------------------------

    async def create(self, body: dict[str, Any], caller: Caller = OPEN) -> dict[str, Any]:
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("'input_file_id' is required", param="input_file_id")
        endpoint = body.get("endpoint")
        if endpoint not in CHAT_URLS:
            raise InvalidRequest(f"endpoint must be /v1/chat/completions, got {endpoint!r}", param="endpoint")
        window = body.get("completion_window", "24h")
        if window != "24h":
            raise InvalidRequest(
                f"completion_window must be '24h', got {window!r}", param="completion_window"
            )
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object", param="metadata")
        path = self.files_dir / self.file(file_id, caller)["id"]
        limit = self.settings.max_requests
        parsed = await asyncio.to_thread(_parse_file, path, limit)
        batch_id = "batch_" + uuid.uuid4().hex[:24]
        now = int(time.time())
        data: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "metadata": metadata,
        }
        self.store.create_batch(batch_id, data, parsed, caller.key_id)
        self._launch(batch_id)
        return self.view(batch_id)

    def view(self, batch_id: str, caller: Caller = OPEN) -> dict[str, Any]:
        data = self.store.batch(batch_id)
        if data is None or not caller.owns(self.store.batch_owner(batch_id)):
            raise NotFound(f"No batch with id '{batch_id}'.", param="batch_id")
        counts = self.store.counts(batch_id)
        data["request_counts"] = {k: counts[k] for k in ("total", "completed", "failed")}
        return data

    def listing(self, limit: int, after: str | None, caller: Caller = OPEN) -> dict[str, Any]:
        """Newest first; a client key lists only its own batches, an admin key every batch."""
        found = self.store.batches(limit=limit + 1, after=after, owner=caller.owner_filter())
        items = [self.view(b["id"]) for b in found]
        more = len(items) > limit
        items = items[:limit]
        return {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": more,
        }

    def cancel(self, batch_id: str, caller: Caller = OPEN) -> dict[str, Any]:
        data = self.view(batch_id, caller)
        if data["status"] in ("validating", "in_progress"):
            self._update(batch_id, status="cancelling", cancelling_at=int(time.time()))
            job = self.jobs.get(batch_id)
            if job is not None:
                job.cancel()
            else:
                self._launch(batch_id)
        elif data["status"] not in ("cancelling", "cancelled"):
            raise InvalidRequest(
                f"Cannot cancel a batch that is {data['status']}.", param="batch_id", status=409
            )
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
        settings = JobSettings(
            concurrency=self.settings.limit(),
            model_limits=self.settings.model_limits,
            retries=self.settings.retries,
            timeout=self.settings.timeout,
        )
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
        owner = self.store.batch_owner(batch_id) or ""  # the batch's files belong to its owner
        out = b"".join(self.store.results(batch_id, OK))
        err = b"".join(self.store.results(batch_id, INVALID, FAILED))
        output = self.add_file(out, f"{batch_id}_output.jsonl", "batch_output", owner)
        changes: dict[str, Any] = {"output_file_id": output["id"]}
        if err:
            changes["error_file_id"] = self.add_file(err, f"{batch_id}_error.jsonl", "batch_output", owner)[
                "id"
            ]
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
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    limits = service.limits

    def api(fn: Callable[[Request, Caller], Awaitable[Any]]) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                caller = await service.access.authenticate(request)
                await service.start()
                result = await fn(request, caller)
            except ThriftyError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers())
            return result if isinstance(result, Response) else JSONResponse(result)

        return handle

    async def upload(request: Request, caller: Caller) -> Any:
        return await service.upload(request, caller)

    async def file(request: Request, caller: Caller) -> Any:
        return service.file(request.path_params["file_id"], caller)

    async def content(request: Request, caller: Caller) -> Any:
        return FileResponse(
            service.content_path(request.path_params["file_id"], caller),
            media_type="application/jsonl",
            content_disposition_type="inline",
        )

    async def create(request: Request, caller: Caller) -> Any:
        body = await read_json(request, limits.max_body_bytes, limits.max_json_depth)
        return await service.create(body, caller)

    async def get(request: Request, caller: Caller) -> Any:
        return service.view(request.path_params["batch_id"], caller)

    async def listing(request: Request, caller: Caller) -> Any:
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise InvalidRequest(f"limit must be an integer from 1 to 100, got {raw!r}", param="limit")
        return service.listing(int(raw), request.query_params.get("after"), caller)

    async def cancel(request: Request, caller: Caller) -> Any:
        return service.cancel(request.path_params["batch_id"], caller)

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
    return parse_batch(
        path.read_bytes().splitlines(), max_requests=limit, limit_name="tasks.batch.max_requests"
    )


async def _form(request: Request) -> Any:
    """The multipart form, its parse errors as OpenAI's error JSON rather than plain text."""
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException

    try:
        return await request.form(max_files=1, max_fields=16)
    except MultiPartException as exc:
        raise InvalidRequest(
            f"The upload is not a valid multipart form: {exc.message}", param="file"
        ) from None
    except HTTPException as exc:
        raise InvalidRequest(
            f"The upload is not a valid multipart form: {exc.detail}", param="file"
        ) from None


def _copy_upload(source: Any, path: Path) -> int:
    """Copy an uploaded (spooled) file to ``path`` in chunks; the bytes copied."""
    source.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)
        return out.tell()
