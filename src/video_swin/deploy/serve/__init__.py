"""`video-swin serve`: a preset behind HTTP, with a web page (`app.create_app`, `app.serve`).

The model runs on one thread behind a bounded queue, batching the views of requests that wait together
(`worker`); uploads stream into a private temporary folder and leave it with their request (`uploads`);
`/metrics` speaks the Prometheus text format (`metrics`). Needs the `serve` extra (FastAPI, uvicorn,
python-multipart): `pip install 'video_swin[serve]'`.
"""

from __future__ import annotations

import importlib.util

EXTRA_HINT = "pip install 'video_swin[serve]'"
PACKAGES = (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("python_multipart", "python-multipart"))


class ServeError(ValueError):
    """The service cannot start; one line."""


def require_packages():
    """Raises ServeError naming the extra when a package of the service is missing."""
    missing = [pip for module, pip in PACKAGES if importlib.util.find_spec(module) is None]
    if missing:
        raise ServeError(f"video-swin serve needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                         f"not installed: {EXTRA_HINT}")
