"""A real HTTP server that answers the part of Grafana's HTTP API `cxpulse grafana sync` uses and
records every request (Grafana itself cannot run on the development machines).

It keeps state like Grafana does: folders, datasources (the password write-only, reported in
`secureJsonFields`), dashboards (versioned, with the folder in `meta`), alert rules (with the
fields Grafana adds) and rule groups (created by their first rule at the default interval).
Unknown paths answer 404 with Grafana's message shape, so a wrong path fails the test.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_GROUP_INTERVAL = 60


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class State:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)


class FakeGrafana:
    def __init__(self) -> None:
        self.state = State()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"grafana": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def writes(self) -> list[Request]:
        return [r for r in self.state.requests if r.method != "GET"]

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        for pattern, handler in (
            (r"/api/folders", self._folders),
            (r"/api/folders/([^/]+)", self._folder),
            (r"/api/datasources", self._datasources),
            (r"/api/datasources/uid/([^/]+)", self._datasource),
            (r"/api/dashboards/db", self._save_dashboard),
            (r"/api/dashboards/uid/([^/]+)", self._dashboard),
            (r"/api/v1/provisioning/alert-rules", self._rules),
            (r"/api/v1/provisioning/alert-rules/([^/]+)", self._rule),
            (r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", self._group),
        ):
            match = re.fullmatch(pattern, path)
            if match:
                result = handler(method, body, *match.groups())
                if result is not None:
                    return result
        return 404, {"message": "Not found"}

    # -- folders -------------------------------------------------------------------------------

    def _folders(self, method: str, body: Any) -> tuple[int, Any] | None:
        if method != "POST":
            return None
        if body["uid"] in self.state.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {"id": len(self.state.folders) + 1, "uid": body["uid"], "title": body["title"],
                  "version": 1}  # fmt: skip
        self.state.folders[body["uid"]] = folder
        return 200, folder

    def _folder(self, method: str, body: Any, uid: str) -> tuple[int, Any] | None:
        folder = self.state.folders.get(uid)
        if folder is None:
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "GET":
            return 200, folder
        if method == "PUT":
            folder.update(title=body["title"], version=folder["version"] + 1)
            return 200, folder
        return None

    # -- datasources -----------------------------------------------------------------------------

    def _stored_datasource(self, body: dict[str, Any], ident: int) -> dict[str, Any]:
        stored = {k: v for k, v in body.items() if k != "secureJsonData"}
        secure = {k: True for k in body.get("secureJsonData", {})}
        return {"id": ident, "orgId": 1, "readOnly": False, "basicAuth": False,
                **stored, "secureJsonFields": secure}  # fmt: skip

    def _datasources(self, method: str, body: Any) -> tuple[int, Any] | None:
        if method != "POST":
            return None
        if body["uid"] in self.state.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        stored = self._stored_datasource(body, len(self.state.datasources) + 1)
        self.state.datasources[body["uid"]] = stored
        return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource added",
                     "name": stored["name"]}  # fmt: skip

    def _datasource(self, method: str, body: Any, uid: str) -> tuple[int, Any] | None:
        current = self.state.datasources.get(uid)
        if current is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, current
        if method == "PUT":
            stored = self._stored_datasource(body, current["id"])
            if "secureJsonData" not in body:  # an update without secrets keeps them
                stored["secureJsonFields"] = current["secureJsonFields"]
            self.state.datasources[uid] = stored
            return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource updated",
                         "name": stored["name"]}  # fmt: skip
        return None

    # -- dashboards ------------------------------------------------------------------------------

    def _save_dashboard(self, method: str, body: Any) -> tuple[int, Any] | None:
        if method != "POST":
            return None
        board = body["dashboard"]
        uid = board["uid"]
        current = self.state.dashboards.get(uid)
        if current is not None and not body.get("overwrite"):
            return 412, {"message": "The dashboard has been changed by someone else",
                         "status": "version-mismatch"}  # fmt: skip
        version = 1 if current is None else current["dashboard"]["version"] + 1
        ident = len(self.state.dashboards) + 1 if current is None else current["dashboard"]["id"]
        self.state.dashboards[uid] = {
            "dashboard": {**board, "id": ident, "version": version},
            "meta": {"folderUid": body.get("folderUid", ""), "slug": uid, "version": version},
        }
        return 200, {"id": ident, "uid": uid, "url": f"/d/{uid}/{uid}", "status": "success",
                     "version": version, "slug": uid}  # fmt: skip

    def _dashboard(self, method: str, body: Any, uid: str) -> tuple[int, Any] | None:
        if method != "GET":
            return None
        current = self.state.dashboards.get(uid)
        if current is None:
            return 404, {"message": "Dashboard not found"}
        return 200, current

    # -- alert rules -----------------------------------------------------------------------------

    def _stored_rule(self, body: dict[str, Any], ident: int) -> dict[str, Any]:
        for required in ("title", "folderUID", "ruleGroup", "condition", "data", "for",
                         "noDataState", "execErrState", "orgID"):  # fmt: skip
            if required not in body:
                raise KeyError(required)
        return {**body, "id": ident, "updated": "2026-11-24T00:00:00Z", "provenance": "api"}

    def _rules(self, method: str, body: Any) -> tuple[int, Any] | None:
        if method != "POST":
            return None
        if body["folderUID"] not in self.state.folders:
            return 400, {"message": "folder does not exist"}
        stored = self._stored_rule(body, len(self.state.rules) + 1)
        self.state.rules[body["uid"]] = stored
        key = (body["folderUID"], body["ruleGroup"])
        self.state.groups.setdefault(key, {"title": body["ruleGroup"],
                                           "folderUid": body["folderUID"],
                                           "interval": DEFAULT_GROUP_INTERVAL})  # fmt: skip
        return 201, stored

    def _rule(self, method: str, body: Any, uid: str) -> tuple[int, Any] | None:
        current = self.state.rules.get(uid)
        if current is None:
            return 404, None  # Grafana answers a missing rule with an empty 404
        if method == "GET":
            return 200, current
        if method == "PUT":
            self.state.rules[uid] = self._stored_rule(body, current["id"])
            return 200, self.state.rules[uid]
        return None

    def _group(self, method: str, body: Any, folder: str, name: str) -> tuple[int, Any] | None:
        group = self.state.groups.get((folder, name))
        if group is None:
            return 404, {"message": "rule group not found"}
        rules = [r for r in self.state.rules.values()
                 if (r["folderUID"], r["ruleGroup"]) == (folder, name)]  # fmt: skip
        if method == "GET":
            return 200, {**group, "rules": rules}
        if method == "PUT":
            group["interval"] = body["interval"]
            return 200, {**group, "rules": rules}
        return None


class _Handler(BaseHTTPRequestHandler):
    grafana: FakeGrafana

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        self.grafana.state.requests.append(
            Request(self.command, path, self.headers.get("Authorization"), body)
        )
        status, answer = self.grafana.handle(self.command, path, body)
        payload = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on the recorded requests instead."""
