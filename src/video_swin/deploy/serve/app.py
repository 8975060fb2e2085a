"""The HTTP service: `create_app(preset, ...)` builds the ASGI application, `serve(...)` runs it with uvicorn.

    POST /v1/classify   multipart field `file` (query `top_k`, `views`) -> `video-swin classify --json`'s object
    POST /v1/timeline   multipart field `file` -> the timeline (segments and windows; `inference.timeline`)
    POST /v1/explain    multipart field `file` -> the explanation video (`inference.explain`)
    GET  /v1/models     the preset: architecture, classes, protocol, parameters, and the service's limits
    GET  /healthz       {"status": "ok"} (open without the API key, for probes)
    GET  /metrics       Prometheus text
    GET  /              the page (static files under /static/, all served from here)

Every error is `{"error": "one line"}` with its status: 401 (no or wrong API key), 404, 408 (the upload
stalled), 413 (over the upload limit: refused from Content-Length before reading, or as soon as the bytes
read pass it), 415 (not multipart/form-data), 422 (no `file` field, a bad query, or a file the decoder
refuses: its one-line reason), 501, 503 (queue full; `Retry-After`), 500 (a bug; logged with its traceback).

The upload is parsed as it streams in (python-multipart's push parser), written to a folder of its own
under the server's private temporary folder (`uploads.UploadFolder`) and removed when the request ends,
whatever ends it; the decoder reads it there, and the model worker (`worker.ModelWorker`) scores its views.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import importlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from video_swin.deploy.serve import require_packages

require_packages()

from fastapi import FastAPI, Query, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402
from python_multipart.exceptions import MultipartParseError  # noqa: E402
from python_multipart.multipart import MultipartParser, parse_options_header  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from video_swin.deploy.serve import uploads  # noqa: E402
from video_swin.deploy.serve.metrics import CONTENT_TYPE, ServiceMetrics  # noqa: E402
from video_swin.deploy.serve.worker import ModelWorker, QueueFull  # noqa: E402

STATIC = Path(__file__).resolve().parent / "static"
API_KEY_ENV = "VIDEO_SWIN_API_KEY"
MIB = 1 << 20
# Paths open without the API key: the probe, and the page, which holds no data and asks for the key.
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
ENDPOINTS = ("/v1/classify", "/v1/timeline", "/v1/explain", "/v1/models", "/healthz", "/metrics", "/")
VIEWS_PATTERN = r"^\d+x\d+$"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the video"}},
                }
            }
        },
    }
}

log = logging.getLogger("video_swin.serve")


class Problem(Exception):
    """An answer other than 200: status, one line, headers."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, " ".join(str(message).split()), headers or {}


def error_response(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


@dataclass
class Upload:
    folder: Path  # the request's own folder, removed when the request ends
    path: Path  # the video in it
    name: str  # the client's file name (last component), for the answer and messages
    size: int

    def explain_error(self, exc) -> str:
        """The decoder's one line with the server's path replaced by the client's file name."""
        return " ".join(str(exc).replace(str(self.path), self.name).replace(str(self.folder), ".").split())


class Service:
    """What the handlers share: the classifier, the worker, the limits, the folders, the metrics."""

    def __init__(self, preset, *, views=None, max_batch=8, queue_size=32, max_upload_mb=100.0, api_key=None,
                 tmp_dir=None, upload_timeout_s=30.0, decode_workers=2, warmup=True, precision="float32"):
        from video_swin.inference.classify import VideoClassifier

        if float(max_upload_mb) <= 0 or float(upload_timeout_s) <= 0 or int(decode_workers) < 1:
            raise ValueError("--max-upload-mb and --upload-timeout must be positive, --decode-workers at least 1")
        self.max_upload_bytes = int(float(max_upload_mb) * MIB)
        self.upload_timeout_s = float(upload_timeout_s)
        self.api_key = api_key or None
        self.folder = uploads.UploadFolder(tmp_dir)  # first: a folder that cannot be used is said at once
        try:
            self.classifier = VideoClassifier(preset, views=views, batch_size=max_batch, precision=precision)
            self.metrics = ServiceMetrics(lambda: self.worker.depth, lambda: self.worker.capacity,
                                          lambda: self.worker.waiting)
            self.worker = ModelWorker(self.classifier, max_batch=max_batch, queue_size=queue_size, metrics=self.metrics)
            if warmup:
                self._warm_up()
        except BaseException:
            self.folder.close()
            raise
        self.decoders = concurrent.futures.ThreadPoolExecutor(int(decode_workers), thread_name_prefix="video-swin-decode")
        self.worker.start()
        self.info = self._describe()

    def _warm_up(self):
        """Runs the model on one view and on two, so that the first requests do not pay for tracing: Keras'
        predict function retraces with `reduce_retracing`, which makes the batch dimension generic at the
        second batch size it sees."""
        import numpy as np

        p = self.classifier.protocol
        for n in sorted({1, min(2, self.worker.max_batch)}):
            self.classifier.view_logits(np.zeros((n, p.clip_len, p.crop_size, p.crop_size, 3), "float32"))

    def _describe(self):
        preset, protocol = self.classifier.preset, self.classifier.protocol
        config, meta = preset.config, preset.metadata
        source = meta.get("source_checkpoint")
        return {
            "name": (meta.get("zoo") or {}).get("name") or preset.path.name,
            "variant": config.get("variant"),
            "architecture": config.get("architecture"),
            "parameters": int(self.classifier.model.count_params()),
            "num_classes": config.get("num_classes"),
            "class_names": self.classifier.class_names,
            "protocol": {**protocol.to_dict(), "views": protocol.views, "num_views": protocol.num_views},
            "source": {
                "checkpoint": Path(source).name if source else None,  # never a path on this server
                "sha256": meta.get("source_sha256"),
                "created": meta.get("converted", meta.get("created")),
                "package_version": meta.get("package_version"),
            },
            "service": {
                "max_batch_views": self.worker.max_batch,
                "queue_size": self.worker.capacity,
                "max_upload_bytes": self.max_upload_bytes,
                "api_key_required": self.api_key is not None,
                "endpoints": {
                    "classify": True,
                    "timeline": optional_available(TIMELINE),
                    "explain": optional_available(EXPLAIN),
                },
            },
        }

    def close(self):
        self.worker.close(timeout=60)
        self.decoders.shutdown(wait=False, cancel_futures=True)
        self.folder.close()

    # -- the steps of a request ------------------------------------------------------------------ #

    def check_declared_size(self, request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_upload_bytes:
            raise Problem(413, self._too_large(int(declared)), {"Connection": "close"})

    def _too_large(self, size):
        return f"upload too large: {size / MIB:.1f} MiB is over the limit of {self.max_upload_bytes / MIB:g} MiB"

    @contextlib.asynccontextmanager
    async def place(self):
        """A place in the model's queue for the whole request (503 when there is none)."""
        try:
            place = self.worker.reserve()
        except QueueFull as exc:
            raise Problem(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        try:
            yield
        finally:
            self.worker.release(place)

    @contextlib.asynccontextmanager
    async def upload(self, request):
        """Receives the multipart field `file` into a new folder; the folder goes when the block ends."""
        folder = self.folder.request_folder()
        try:
            yield await receive_upload(request, folder, self.max_upload_bytes, self.upload_timeout_s, self._too_large)
        finally:
            await asyncio.to_thread(_remove_tree, folder)

    async def decode(self, upload, protocol):
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(self.decoders, self.classifier.views, str(upload.path), protocol)
        except ValueError as exc:  # VideoError and the protocol's refusals: the input's fault
            raise Problem(422, upload.explain_error(exc)) from None
        finally:
            self.metrics.decode_seconds.inc(time.perf_counter() - start)

    async def on_model_thread(self, fn, upload):
        try:
            return await asyncio.wrap_future(self.worker.call(fn))
        except ValueError as exc:
            raise Problem(422, upload.explain_error(exc)) from None


def _remove_tree(folder):
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


async def receive_upload(request, folder, limit, idle_timeout_s, too_large):
    """Streams a multipart/form-data body into `folder`, keeping the first part named `file`.

    Counts every byte received (a client may send no Content-Length, chunked, or a false one) and stops
    at `limit` (413) before reading further; a body that stops arriving for `idle_timeout_s` seconds is
    abandoned (408), one whose client goes away ends the request (499, never seen by that client)."""
    mime, params = parse_options_header(request.headers.get("content-type"))
    if mime != b"multipart/form-data":
        raise Problem(415, "send the video as multipart/form-data in the field 'file'")
    boundary = params.get(b"boundary")
    if not boundary:
        raise Problem(422, "multipart/form-data without a boundary")
    state = {"headers": {}, "field": b"", "value": b"", "target": None, "name": None, "done": False}
    out = {"file": None, "path": None, "size": 0}

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"] = state["value"] = b""

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition"))
        state["target"] = None
        if disposition.get(b"name") == b"file" and out["file"] is None and not state["done"]:
            name = uploads.client_file_name(disposition.get(b"filename", b"").decode("utf-8", "replace"))
            out["path"] = folder / f"upload{uploads.upload_suffix(name)}"
            out["name"] = name
            out["file"] = state["target"] = open(out["path"], "wb")

    def on_part_data(data, start, end):
        if state["target"] is not None:
            state["target"].write(data[start:end])
            out["size"] += end - start

    def on_part_end():
        if state["target"] is not None:
            state["target"].close()
            state["target"] = None
            state["done"] = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    received = 0
    try:
        while True:
            try:
                message = await asyncio.wait_for(request.receive(), idle_timeout_s)
            except asyncio.TimeoutError:
                raise Problem(408, f"the upload stalled: nothing arrived for {idle_timeout_s:g} s",
                              {"Connection": "close"}) from None
            if message["type"] == "http.disconnect":
                raise Problem(499, "the client went away during the upload")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise Problem(413, too_large(received), {"Connection": "close"})
            if chunk:
                parser.write(chunk)
            if not message.get("more_body", False):
                break
        parser.finalize()
    except MultipartParseError as exc:
        raise Problem(422, f"malformed multipart body: {exc}") from None
    except OSError as exc:
        raise Problem(507, f"cannot store the upload: {exc.strerror or exc}") from None
    finally:
        if out["file"] is not None:
            out["file"].close()
    if not state["done"]:
        raise Problem(422, "no complete field 'file' in the upload (send the video as multipart/form-data field 'file')")
    return Upload(folder, out["path"], out["name"], out["size"])


# -- the endpoints that other modules provide ------------------------------------------------------ #

TIMELINE = ("video_swin.inference.timeline", "timeline")
EXPLAIN = ("video_swin.inference.explain", "explain")


def optional_function(module_name, function_name, endpoint):
    """The function, or a 501 naming what is missing."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise Problem(501, f"{endpoint} is not available in this installation ({module_name} is missing)") from None
        raise
    fn = getattr(module, function_name, None)
    if fn is None:
        raise Problem(501, f"{endpoint} is not available in this installation ({module_name}.{function_name} is missing)")
    return fn


def optional_available(spec):
    try:
        optional_function(*spec, "")
    except Problem:
        return False
    return True


def run_timeline(timeline, classifier, video, name, query):
    """`inference.timeline` on an upload, on the model thread: the one place that knows its signature.
    Returns the segments in ActivityNet's results format, keyed by the upload's name (never a server path),
    with `windows` (each window's times and top-k) and `duration_s`. One `TimelineModel` per preset is kept.
    Query: `stride_s`, `smooth`, `min_score`, `top_k` (the timeline's defaults otherwise)."""
    from video_swin.inference.timeline import TimelineModel, activitynet_results

    model = _TIMELINE_MODELS.get(id(classifier))
    if model is None:
        model = _TIMELINE_MODELS[id(classifier)] = TimelineModel(classifier.preset, precision=classifier.precision)
    options = {}
    for key, kind in (("stride_s", float), ("smooth", int), ("min_score", float), ("top_k", int)):
        if query.get(key) not in (None, ""):
            try:
                options[key] = kind(query[key])
            except ValueError:
                raise ValueError(f"query {key}={query[key]!r} is not a number") from None
    result = model.timeline(str(video), video_id=name, **options)
    return {**activitynet_results(result), "windows": result["windows"], "duration_s": result["duration_s"]}


_TIMELINE_MODELS = {}


def run_explain(explain, classifier, video, out, query):
    """`inference.explain` on an upload, on the model thread, writing the explanation video to `out` (its
    suffix is the format): the one place that knows its signature. One `Explainer` per preset is kept, so
    its traced functions serve every request. Query: `label` (default: the top class), `method` (default:
    the module's, occlusion)."""
    from video_swin.inference import explain_render
    from video_swin.inference.explain import DEFAULT_METHOD, Explainer

    explainer = _EXPLAINERS.get(id(classifier))
    if explainer is None:
        explainer = _EXPLAINERS[id(classifier)] = Explainer(classifier.preset)
    explanation = explainer(str(video), label=query.get("label") or None, method=query.get("method") or DEFAULT_METHOD)
    explain_render.write(explanation, str(video), out)


_EXPLAINERS = {}


# -- middleware ------------------------------------------------------------------------------------ #


class MetricsMiddleware:
    """Counts every answer by endpoint and status and times it (to the end of its body)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [None]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in ENDPOINTS else "/static" if path.startswith("/static/") else "other"
            self.metrics.requests.inc(1, endpoint, str(status[0] or 500))
            self.metrics.latency.observe(time.perf_counter() - start, endpoint)


class ApiKeyMiddleware:
    """Requests without the key get 401: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in
    constant time. The probe and the page stay open (`OPEN_PATHS`)."""

    def __init__(self, app, key):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        bearer = headers.get(b"authorization", b"")
        if given is None and bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        if given is not None and hmac.compare_digest(given, self.key):
            return await self.app(scope, receive, send)
        message = "missing API key" if given is None else "wrong API key"
        response = error_response(401, f"{message}: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                  {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


# -- the application ------------------------------------------------------------------------------- #


def create_app(preset, *, views=None, max_batch=8, queue_size=32, max_upload_mb=100.0, api_key=None, tmp_dir=None,
               upload_timeout_s=30.0, decode_workers=2, warmup=True, precision="float32", service=None):
    """The ASGI application for a preset (folder or registered name); loads the model now.

    views: the protocol's views override (e.g. "1x1"); max_batch: views per model call (several requests'
    views share one); queue_size: requests the service holds at once (uploading, waiting, being scored);
    max_upload_mb: the largest request body, in MiB; api_key: required on every request but the probe and
    the page (default: $VIDEO_SWIN_API_KEY; "" for none); tmp_dir: the private folder for uploads (default
    under the system's temporary folder); upload_timeout_s: an upload that sends nothing for this long is
    dropped; decode_workers: uploads decoded at once; precision: "float32" or "bfloat16" (where the CPU
    multiplies bfloat16 natively, see `VideoClassifier`). `app.state.service.close()` (or the lifespan's end)
    stops the worker and removes this process's temporary folder.
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    service = service or Service(
        preset, views=views, max_batch=max_batch, queue_size=queue_size, max_upload_mb=max_upload_mb,
        api_key=api_key, tmp_dir=tmp_dir, upload_timeout_s=upload_timeout_s, decode_workers=decode_workers,
        warmup=warmup, precision=precision)
    closed = []

    def close():
        if not closed:
            closed.append(True)
            service.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        close()

    app = FastAPI(title="video_swin", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service, app.state.close = service, close
    classifier = service.classifier

    @app.exception_handler(Problem)
    async def problem(request, exc):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "query")
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def bug(request, exc):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}")

    def protocol_for(views):
        try:
            return classifier.protocol if views is None else classifier.protocol.with_views(views)
        except ValueError as exc:
            raise Problem(422, f"views: {exc}") from None

    @app.post("/v1/classify", openapi_extra=UPLOAD_BODY)
    async def classify(request: Request, top_k: int = Query(5, ge=1), views: str | None = Query(None, pattern=VIEWS_PATTERN)):
        """`video-swin classify --json` on the uploaded video."""
        from video_swin.inference.classify import Result

        protocol = protocol_for(views)
        service.check_declared_size(request)
        async with service.place():
            async with service.upload(request) as upload:
                start = time.perf_counter()
                view_array, timings = await service.decode(upload, protocol)
            probabilities, info = await asyncio.wrap_future(service.worker.score(view_array))
        timings.update(queue_s=info["queue_s"], model_s=info["model_s"], total_s=time.perf_counter() - start,
                       views=int(len(view_array)), batch_views=info["batch_views"])
        return Result(probabilities, classifier.class_names, timings).record(upload.name, top_k)

    @app.post("/v1/timeline", openapi_extra=UPLOAD_BODY)
    async def timeline(request: Request):
        """The timeline of the uploaded video (`inference.timeline`)."""
        fn = optional_function(*TIMELINE, "POST /v1/timeline")
        service.check_declared_size(request)
        async with service.place(), service.upload(request) as upload:
            query = dict(request.query_params)
            data = await service.on_model_thread(lambda: run_timeline(fn, classifier, upload.path, upload.name, query),
                                                  upload)
        return JSONResponse(data)

    @app.post("/v1/explain", openapi_extra=UPLOAD_BODY)
    async def explain(request: Request, format: str = Query("mp4", pattern="^(mp4|gif)$")):
        """The explanation video of the uploaded video (`inference.explain`), MP4 or GIF."""
        fn = optional_function(*EXPLAIN, "POST /v1/explain")
        service.check_declared_size(request)
        async with service.place(), service.upload(request) as upload:
            out, query = upload.folder / f"explanation.{format}", dict(request.query_params)
            await service.on_model_thread(lambda: run_explain(fn, classifier, upload.path, out, query), upload)
            content = await asyncio.to_thread(out.read_bytes)
        return Response(content, media_type="video/mp4" if format == "mp4" else "image/gif")

    @app.get("/v1/models")
    async def models():
        """The preset's architecture, classes and protocol, and the service's limits."""
        return service.info

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", PageFiles(directory=STATIC), name="static")

    if service.api_key:
        app.add_middleware(ApiKeyMiddleware, key=service.api_key)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app


# The page runs only its own files: no inline script, nothing from elsewhere; media from blob: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class PageFiles(StaticFiles):
    """The page's files, with the page's headers."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


def _version():
    from video_swin import __version__

    return __version__


# -- running it ------------------------------------------------------------------------------------ #


def bind(host, port):
    """A socket bound to host:port (port 0: a free one), not yet listening, or one line saying why not.

    Bound first, so that a port in use is said at once, not after the model has loaded; listening only
    once the model is loaded, so that no connection waits on a server that cannot answer yet."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(preset, host="127.0.0.1", port=8080, *, access_log=True, on_ready=None, **options):
    """Runs the service until SIGINT / SIGTERM; `options` are `create_app`'s. `on_ready(url)` is called once
    it accepts requests."""
    import uvicorn

    sock = bind(host, port)
    try:
        app = create_app(preset, **options)
    except BaseException:
        sock.close()
        raise
    try:
        sock.listen(2048)
        sock.setblocking(False)
        name = sock.getsockname()
        shown = f"[{name[0]}]" if sock.family == socket.AF_INET6 else name[0]
        url = f"http://{shown}:{name[1]}"

        class Server(uvicorn.Server):
            async def startup(self, sockets=None):
                await super().startup(sockets=sockets)
                if self.started and on_ready is not None:
                    on_ready(url)

        config = uvicorn.Config(app, log_level="info", access_log=access_log, timeout_graceful_shutdown=30,
                                lifespan="on", server_header=False)
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
        app.state.close()
