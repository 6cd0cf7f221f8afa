"""``digest doctor``'s one-click check against the real web app (uvicorn on loopback, every backend)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from digest.app.doctor import check_unsubscribe
from digest.core.settings import Settings
from digest.store.models import Subscriber
from digest.transport.sink import free_port
from digest.web import WebServer


def test_real_app_answers_the_one_click_post(server: WebServer, web_settings: Settings, engine: Engine) -> None:
    check = check_unsubscribe(web_settings, timeout=5)
    assert check.status == "pass" and " answered 400 " in check.detail
    with Session(engine) as session:  # the invalid token touched nobody
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == 0


def test_nothing_listening_at_base_url_fails_with_the_fix() -> None:
    settings = Settings(base_url=f"http://127.0.0.1:{free_port()}")
    check = check_unsubscribe(settings, timeout=2)
    assert check.status == "fail" and check.fix.startswith("run the web app")


def test_a_5xx_answer_fails() -> None:
    class Broken(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        check = check_unsubscribe(Settings(base_url=f"http://127.0.0.1:{httpd.server_address[1]}"), timeout=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (check.status, check.detail.rsplit(" ", 1)[-1]) == ("fail", "502")
