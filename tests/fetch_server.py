"""A local HTTP mirror for the fetch tests: serves a folder on 127.0.0.1 with HTTP Range support, logs each
request's Range header, can drop a connection after a number of bytes, and stops by itself after a while.
Never touches the internet."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


class Mirror:
    """``Mirror(folder)``: ``url`` serves ``folder/<name>``; ``ranges`` lists (name, Range header or None) per
    request; ``cut[name] = n`` makes the next response for ``name`` stop after n bytes of its body."""

    def __init__(self, folder: Path, lifetime_s: float = 600.0) -> None:
        self.folder, self.ranges, self.cut = Path(folder), [], {}
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/").split("?")[0]
                path = mirror.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                header = self.headers.get("Range")
                mirror.ranges.append((name, header))
                start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
                if start >= len(data) and header:
                    self.send_error(416)
                    return
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                self.wfile.write(body[:mirror.cut.pop(name)] if name in mirror.cut else body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.close)
        self._timer.daemon = True

    def __enter__(self) -> "Mirror":
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()
