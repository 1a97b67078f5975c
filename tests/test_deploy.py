"""The server's own settings (.streamlit/config.toml), the upload limit every uploader
states, and the reverse-proxy example (deploy/nginx.conf) checked by nginx itself and
run in front of a stub app: security headers, metrics closed, body size and upload rate
limited, the websocket upgraded."""
from __future__ import annotations

import http.client
import http.server
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.preprocess import MAX_FILE_BYTES, MAX_FILE_MB

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


# -- .streamlit/config.toml --------------------------------------------------------------
def test_every_setting_is_a_real_streamlit_option():
    from streamlit import config

    known = config.get_config_options()
    for section, values in CONFIG.items():
        for key in values:
            assert f"{section}.{key}" in known, f"{section}.{key} is not a Streamlit option"


@pytest.mark.parametrize("option,value", [
    ("server.enableXsrfProtection", True), ("server.enableCORS", True),
    ("server.enableStaticServing", False), ("server.enableAgentApi", False),
    ("server.enableWebsocketCompression", False),
    ("client.showErrorDetails", "none"), ("client.showErrorLinks", "false"),
    ("client.toolbarMode", "viewer"), ("browser.gatherUsageStats", False),
    ("client.allowedOrigins", []),             # no *.streamlit.app parent frames
])
def test_config_sets_the_safe_value(option, value):
    section, key = option.split(".")
    assert CONFIG[section][key] == value


def test_config_bounds_uploads_sessions_and_caches():
    server = CONFIG["server"]
    assert server["maxUploadSize"] == MAX_FILE_MB and MAX_FILE_BYTES == MAX_FILE_MB * 2**20
    assert server["disconnectedSessionTTL"] <= 60
    assert server["maxCacheDataSize"] == "1gb"


# -- every uploader states the server's limit and enforces it in the browser -------------
def _uploaders(at: AppTest) -> dict[str, tuple[str, int]]:
    return {u.key: (u.proto.label, u.proto.max_upload_size_mb)
            for u in at.get("file_uploader")}


def test_uploaders_state_the_limit_of_the_config():
    limit = CONFIG["server"]["maxUploadSize"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/models.py").run()
    found = _uploaders(at)
    at.switch_page("pages/draw.py").run()
    at.radio(key="draw_source").set_value("Upload").run()
    assert not at.exception
    found.update(_uploaders(at))
    assert {"import_spec", "import_weights", "draw_upload"} <= set(found)
    for key, (label, mb) in found.items():
        assert mb == limit, (key, mb)
        assert f"at most {limit} MB" in label, (key, label)


# -- deploy/nginx.conf -------------------------------------------------------------------
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stub(http.server.BaseHTTPRequestHandler):
    """Stands in for Streamlit: answers everything with 200 and what it was asked."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = f"{self.command} {self.path} upgrade={self.headers.get('Upgrade')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@needs_nginx
def test_nginx_accepts_the_example(tmp_path):
    (tmp_path / "logs").mkdir()
    out = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e",
                          str(tmp_path / "error.log"), "-c", str(NGINX_CONF)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def proxy(tmp_path):
    """nginx running the example on a free port, in front of the stub app."""
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    port = _free_port()
    text = NGINX_CONF.read_text().replace("listen 80;", f"listen 127.0.0.1:{port};") \
        .replace("server 127.0.0.1:8501;", f"server 127.0.0.1:{app.server_port};")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    (tmp_path / "logs").mkdir()
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                             "-c", str(conf), "-g", f"daemon off; pid {tmp_path}/nginx.pid;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    app.shutdown()


def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict | None = None, source: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20,
                                      source_address=(source, 0))
    conn.request(method, path, body=body or None, headers=headers or {})
    resp = conn.getresponse()
    result = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return result


@needs_nginx
def test_the_proxy_sets_headers_limits_bodies_and_uploads(proxy):
    status, headers, body = _request(proxy, "GET", "/")
    assert status == 200 and body.startswith(b"GET /")
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "frame-ancestors 'none'"
    assert _request(proxy, "GET", "/_stcore/agent/interact")[0] == 404
    too_big = b"x" * (MAX_FILE_BYTES + 2 * 2**20)
    assert _request(proxy, "PUT", "/_stcore/upload_file/s/f0", too_big)[0] == 413
    statuses = [_request(proxy, "PUT", f"/_stcore/upload_file/s/f{i}", b"x" * 1000)[0]
                for i in range(1, 16)]
    assert statuses[:10] == [200] * 10 and 429 in statuses      # burst of 10, then refused


@needs_nginx
def test_the_proxy_upgrades_the_websocket_and_keeps_metrics_local(proxy):
    status, _, body = _request(proxy, "GET", "/_stcore/stream",
                               headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert status == 200 and body.endswith(b"upgrade=websocket")
    assert _request(proxy, "GET", "/_stcore/metrics")[0] == 200          # the machine itself
    # Any other address (127.0.0.2 is another host as far as nginx can tell) is refused.
    status, headers, _ = _request(proxy, "GET", "/_stcore/metrics", source="127.0.0.2")
    assert status == 403 and headers["x-frame-options"] == "DENY"
