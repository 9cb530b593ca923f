"""``/docs`` (Swagger UI) and ``/redoc``, with every asset served by this process.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank without internet
access. The assets come from the ``fastapi-offline`` package (a pinned dependency: it ships
the ``swagger-ui-dist`` and ReDoc bundles and tracks their releases), so they are in the
virtual environment and in the Docker images wherever the service is installed, with no Node
toolchain at build time. Both services serve them through this one module (the ``server``
extra). See docs/openapi.md, "Docs pages".
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

__all__ = ["ASSETS", "ASSETS_PATH", "SWAGGER_UI_PARAMETERS", "install_docs"]

ASSETS: Final = Path(str(files("fastapi_offline") / "static"))
ASSETS_PATH: Final = "/docs/assets"
SWAGGER_UI_PARAMETERS: Final[dict[str, Any]] = {
    "displayOperationId": True,  # the name a generated client gives the call
    "defaultModelsExpandDepth": 0,
    "tryItOutEnabled": False,
}


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` (built with ``docs_url=None, redoc_url=None``) and their
    assets under ``/docs/assets``; no page refers to any other host."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
