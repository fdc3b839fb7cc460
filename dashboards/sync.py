"""`cxpulse grafana sync`: create or update the folder, datasource, dashboards and alert rules on
a Grafana through its HTTP API (grafana-client), idempotently.

Every object is read first and written only when what cxpulse manages differs, so a second
sync makes no write; `plan` alone is the dry run. Only the fields cxpulse sets are compared:
what Grafana adds (ids, versions, timestamps, provenance) is not a difference. The datasource
password cannot be read back: it is sent when the datasource is created or changes, or when
Grafana reports none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from cxpulse.dashboards.build import Documents
from cxpulse.dashboards.rules import RULE_GROUP

SYNC_MESSAGE = "cxpulse grafana sync"


@dataclass
class Change:
    kind: str  # folder | datasource | dashboard | alert rule | rule group
    uid: str
    action: str  # create | update
    title: str
    apply: Callable[[], Any] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.uid} ({self.title})"


def _get(read: Callable[[], Any]) -> Any | None:
    """The object, or None when Grafana answers 404."""
    try:
        return read()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def _differs(wanted: Any, current: Any) -> bool:
    """Whether `current` lacks or changes anything of `wanted` (dict keys beyond it are fine)."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return True
        return any(_differs(v, current.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        if not isinstance(current, list) or len(wanted) != len(current):
            return True
        return any(_differs(w, c) for w, c in zip(wanted, current, strict=True))
    return bool(wanted != current)


class GrafanaSync:
    def __init__(self, api: GrafanaApi, docs: Documents) -> None:
        self.api = api
        self.docs = docs

    def plan(self) -> list[Change]:
        """The writes a sync makes now (reads only)."""
        return [
            *self._folder(),
            *self._datasource(),
            *(c for d in self.docs.dashboards for c in self._dashboard(d)),
            *(c for r in self.docs.rules for c in self._rule(r)),
            *self._rule_group(),
        ]

    def run(self) -> list[Change]:
        """Apply the plan in order (folder first: the rest lives in it); returns it."""
        changes = self.plan()
        for change in changes:
            change.apply()
        return changes

    def _folder(self) -> list[Change]:
        folder = self.docs.folder
        current = _get(lambda: self.api.folder.get_folder(folder["uid"]))
        if current is None:
            create = partial(self.api.folder.create_folder, folder["title"], uid=folder["uid"])
            return [Change("folder", folder["uid"], "create", folder["title"], create)]
        if current.get("title") != folder["title"]:
            update = partial(
                self.api.folder.update_folder, folder["uid"], title=folder["title"], overwrite=True
            )
            return [Change("folder", folder["uid"], "update", folder["title"], update)]
        return []

    def _datasource(self) -> list[Change]:
        wanted = self.docs.datasource
        uid = wanted["uid"]
        current = _get(lambda: self.api.datasource.get_datasource_by_uid(uid))
        if current is None:
            create = partial(self.api.datasource.create_datasource, wanted)
            return [Change("datasource", uid, "create", wanted["name"], create)]
        public = {k: v for k, v in wanted.items() if k != "secureJsonData"}
        no_password = "secureJsonData" in wanted and not (
            current.get("secureJsonFields") or {}
        ).get("password")
        if _differs(public, current) or no_password:
            update = partial(self.api.datasource.update_datasource_by_uid, uid, wanted)
            return [Change("datasource", uid, "update", wanted["name"], update)]
        return []

    def _dashboard(self, board: dict[str, Any]) -> list[Change]:
        uid, folder = board["uid"], self.docs.folder["uid"]
        current = _get(lambda: self.api.dashboard.get_dashboard(uid))
        payload = {
            "dashboard": {**board, "id": None},
            "folderUid": folder,
            "overwrite": True,
            "message": SYNC_MESSAGE,
        }
        save = partial(self.api.dashboard.update_dashboard, payload)
        if current is None:
            return [Change("dashboard", uid, "create", board["title"], save)]
        stored = {k: v for k, v in current["dashboard"].items() if k not in ("id", "version")}
        moved = current.get("meta", {}).get("folderUid") != folder
        if moved or _differs(board, stored) or _differs(stored, board):
            return [Change("dashboard", uid, "update", board["title"], save)]
        return []

    def _rule(self, rule: dict[str, Any]) -> list[Change]:
        uid = rule["uid"]
        provisioning = self.api.alertingprovisioning
        current = _get(lambda: provisioning.get_alertrule(uid))
        if current is None:
            create = partial(provisioning.create_alertrule, rule)
            return [Change("alert rule", uid, "create", rule["title"], create)]
        if _differs(rule, current):
            update = partial(provisioning.update_alertrule, uid, rule)
            return [Change("alert rule", uid, "update", rule["title"], update)]
        return []

    def _rule_group(self) -> list[Change]:
        """The group's evaluation interval, the one field of a group cxpulse sets. A group that
        does not exist yet is created by its first rule with Grafana's default interval; the
        change, applied after the rules, sets ours."""
        folder, interval = self.docs.folder["uid"], self.docs.rule_interval_seconds
        provisioning = self.api.alertingprovisioning
        group = _get(lambda: provisioning.get_rule_group(folder, RULE_GROUP))
        if group is not None and group.get("interval") == interval:
            return []

        def update() -> None:
            current = provisioning.get_rule_group(folder, RULE_GROUP)
            provisioning.update_rule_group(folder, RULE_GROUP, {**current, "interval": interval})

        return [Change("rule group", RULE_GROUP, "update", f"every {interval} s", update)]


def connect(url: str, token: str | None) -> GrafanaApi:
    """A client for `url` (its path prefix kept), with a service-account token if given."""
    return GrafanaApi.from_url(url, credential=token)
