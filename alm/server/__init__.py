"""``alm serve``: an HTTP server (FastAPI on uvicorn) with one endpoint per task and dynamic batching.

    from alm.server import ServerSettings, create_app
    app = create_app(alm.load(), ServerSettings(max_batch=8, max_wait_ms=5))

See :mod:`alm.server.app` for the endpoints and :mod:`alm.server.protocol` for how audio travels and the errors.
"""

from alm.server.app import create_app
from alm.server.batcher import BatcherStoppedError, DynamicBatcher, QueueFullError
from alm.server.metrics import ServerMetrics
from alm.server.settings import ServerSettings

__all__ = ["BatcherStoppedError", "DynamicBatcher", "QueueFullError", "ServerMetrics", "ServerSettings", "create_app"]
