"""Where the provider's app and its parts live below the api-server's base URL: one home for the
prefixes both the app and the pages (and the plugin's menu entries) build their URLs from."""

from __future__ import annotations

URL_PREFIX = "/policyzones"
"""Where the plugin mounts the provider's app below the api-server's base URL."""
API_VERSION = "v1"
API_PREFIX = f"/api/{API_VERSION}"
"""The JSON API, below :data:`URL_PREFIX`."""
UI_PREFIX = "/ui"
"""The pages, below :data:`URL_PREFIX`."""
STATIC_PREFIX = f"{UI_PREFIX}/static"
"""The pages' CSS, script and icons, below :data:`URL_PREFIX`."""
