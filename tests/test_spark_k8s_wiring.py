"""One Spark Connect driver per session on Kubernetes, wired into a real hub (``spawner =
'kubernetes'``, ``spark = 'kubernetes'``; hub/spark.py ``session_started`` /
``session_ended``, hub/spark_k8s.py).

The Kubernetes API is ``k8s_standin.StandIn`` (a test double: no cluster runs here) speaking
the real HTTP API; it runs session pods (scenario ``run``, or the real agent) and keeps
driver pods running without starting Spark. The drivers' web UIs are one small local HTTP
server (``DriverUI``) that the hub reaches through ``spark_kubernetes_ui_url`` with the
driver's Service and namespace in the path, so every proxied request shows which driver it
went to. Checked:

* a session start creates the session pod and its driver pod, Service and NetworkPolicy
  (labels, the ownerReference chain session pod → driver pod → Service and NetworkPolicy
  by uid, exactly the built Spark settings in the driver's command, the driver and its
  executor template under the session pod's uid), and the session pod's ``SPARK_REMOTE``
  names the driver Service with the user and the session's derived Spark session id;
* ``GET /api/spark`` and ``/spark-ui/<user>/``: the owner and administrators see the UI of
  the owner's most recently started session's driver, others get 403 and nothing reaches
  the driver; no UI without a live driver;
* a restarted hub adopts the session and keeps its driver (same pod uid);
* stopping the session deletes its driver pod, Service and NetworkPolicy (the hub's own
  DELETE calls); a session pod deleted outside the hub takes all of them with it
  (ownerReferences);
* a driver the API refuses (403 on services) leaves the session running: its clients are
  told why, the hub logs it, ``GET /api/spark`` and doctor repeat it, no half-made driver
  stays.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from k8s_standin import StandIn
from test_k8s_spawner import NS, _until_state, k8s_hub

from rsparkhub.client import HubClient
from rsparkhub.hub import spark_k8s as sk
from rsparkhub.hub.api.spark import UI_CSP
from rsparkhub.hub.spark import UI_FILTER, ui_key

from conftest import HubProcess

SPARK_IMAGE = "registry.example/spark:4.0.1-test"
FORBIDDEN = (
    403,
    "Forbidden",
    'services is forbidden: User "system:serviceaccount:rsh-test:rsparkhub-hub" cannot '
    'create resource "services" in API group "" in the namespace "rsh-test"',
)


class DriverUI:
    """A tiny HTTP server standing in for the drivers' web UIs (port 4040 of each driver
    Service). Paths are ``/<namespace>/<service>/<page>``: ``/`` redirects (absolute URL, as
    Jetty does) to ``jobs/``, ``jobs/`` is a page naming the driver; every request is
    recorded with its headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        ui = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                ui.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                m = re.fullmatch(r"/([^/]+)/([^/]+)/(.*)", self.path)
                if m is None:
                    self.send_error(404)
                    return
                ns, svc, page = m.groups()
                if page == "":
                    self.send_response(302)
                    self.send_header("Location", f"{ui.url}/{ns}/{svc}/jobs/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if page != "jobs/":
                    self.send_error(404)
                    return
                body = f"<title>Spark Jobs</title><p>driver {svc} in {ns}</p>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html;charset=utf-8")
                self.send_header("Set-Cookie", "JSESSIONID=spark")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def template(self) -> str:
        """The hub's ``spark_kubernetes_ui_url`` pointing here."""
        return self.url + "/{namespace}/{service}"


@pytest.fixture
def driver_ui() -> Iterator[DriverUI]:
    ui = DriverUI()
    ui.thread.start()
    try:
        yield ui
    finally:
        ui.server.shutdown()
        ui.server.server_close()
        ui.thread.join(10)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    with StandIn(step_s=0.02, agent_root=tmp_path / "node") as s:
        yield s


def spark_hub(tmp_path: Path, standin: StandIn, driver_ui: DriverUI, **env: str) -> HubProcess:
    return k8s_hub(
        tmp_path,
        standin,
        RSPARKHUB_SPARK="kubernetes",
        RSPARKHUB_SPARK_KUBERNETES_IMAGE=SPARK_IMAGE,
        RSPARKHUB_SPARK_KUBERNETES_UI_URL=driver_ui.template,
        **env,
    )


def spark_session_id(hub: HubProcess, hub_session_id: str) -> str:
    """The Spark session id the hub derives (HMAC of the session id with its secret)."""
    secret = (hub.data_dir / "spark" / "secret").read_text().strip().encode()
    digest = hmac.new(secret, hub_session_id.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def connect_token(hub: HubProcess, hub_session_id: str) -> str:
    """The session's Spark Connect token, as the hub derives it (hub/spark.py)."""
    secret = (hub.data_dir / "spark" / "secret").read_text().strip().encode()
    msg = b"spark-connect-token:session:" + hub_session_id.encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _secret(hub: HubProcess) -> bytes:
    return (hub.data_dir / "spark" / "secret").read_text().strip().encode()


def _verify_jws(authorization: str, key: str) -> dict[str, Any]:
    """The claims of ``Bearer <compact HS256 JWS>`` after checking its signature with
    ``key`` (base64url), as Spark's JWSFilter does."""

    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    scheme, _, jws = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    header, payload, signature = jws.split(".")
    assert json.loads(unb64(header))["alg"] == "HS256"
    mac = hmac.new(unb64(key), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(mac, unb64(signature)), "the JWS is not signed with the key"
    return dict(json.loads(unb64(payload)))


def _secret_value(standin: StandIn, ref: dict[str, str]) -> str:
    secret = standin.get("secrets", NS, ref["name"])
    assert secret is not None, ref
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def _env(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def _error(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def _until_ui(c: HubClient, want: str | None, timeout: float = 15) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for _ in range(int(timeout / 0.1)):
        info = await c.request("GET", "/api/spark")
        if info["ui_url"] == want:
            return info
        await asyncio.sleep(0.1)
    raise AssertionError(f"GET /api/spark never showed ui_url {want!r}: {info}")


async def test_each_session_gets_its_own_driver(
    tmp_path: Path, standin: StandIn, driver_ui: DriverUI
) -> None:
    hub = spark_hub(tmp_path, standin, driver_ui).start()
    try:
        alice, bob = hub.make_user("alice"), hub.make_user("bob")
        root = hub.make_user("root", admin=True)
        async with (
            HubClient(hub.url, alice) as c,
            HubClient(hub.url, bob) as b,
            HubClient(hub.url, root) as admin,
            httpx.AsyncClient(base_url=hub.url) as anon,
        ):
            wid = (await c.ensure_workspace("spark"))["id"]
            sid = (await c.start_session(wid))["id"]

            # --- the objects: session pod, driver pod, Service, NetworkPolicy
            session_pod = standin.get("pods", NS, f"rsparkhub-session-{sid}")
            assert session_pod is not None
            name = sk.driver_name(sid)
            driver = standin.get("pods", NS, name)
            svc = standin.get("services", NS, name)
            policy = standin.get("networkpolicies", NS, name)
            assert driver is not None and svc is not None and policy is not None
            owner = sk.Owner(session_pod["metadata"]["name"], session_pod["metadata"]["uid"])
            assert driver["metadata"]["ownerReferences"] == [owner.reference()]
            driver_owner = sk.Owner(name, driver["metadata"]["uid"])
            assert svc["metadata"]["ownerReferences"] == [driver_owner.reference()]
            assert policy["metadata"]["ownerReferences"] == [driver_owner.reference()]
            # The session runs as alice's own uid (users.uid, from session_uid_min up), and
            # her driver and its executors as the session does.
            uid = session_pod["spec"]["securityContext"]["runAsUser"]
            assert uid >= 200000
            template = json.loads(
                driver["metadata"]["annotations"][sk.EXECUTOR_TEMPLATE_ANNOTATION]
            )
            for sc in (
                session_pod["spec"]["securityContext"],
                driver["spec"]["securityContext"],
                template["spec"]["securityContext"],
            ):
                assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (uid, uid, uid)
            labels = driver["metadata"]["labels"]
            assert labels["app.kubernetes.io/component"] == "spark-driver"
            assert labels["rsparkhub.io/user"] == "alice"
            assert labels["rsparkhub.io/session"] == sid
            assert labels["rsparkhub.io/workspace"] == wid
            assert svc["metadata"]["labels"] == labels
            # Exactly the driver the builders make from the hub's settings.
            cfg = sk.SparkK8sConfig(namespace=NS, image=SPARK_IMAGE)
            built = sk.build_driver_pod(
                cfg,
                "alice",
                sid,
                owner=owner,
                workspace=wid,
                proxy_base="/spark-ui/alice",
                uid=uid,
            )
            assert driver["spec"]["containers"] == built["spec"]["containers"]
            assert driver["metadata"]["annotations"] == built["metadata"]["annotations"]
            # Only this session's pod (and its own driver and executors) get in.
            built_policy = sk.build_network_policy(
                cfg, "alice", sid, owner=driver_owner, workspace=wid
            )
            assert policy["spec"] == built_policy["spec"]
            assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
                "app.kubernetes.io/name": "rsparkhub",
                "app.kubernetes.io/component": "session",
                "rsparkhub.io/session": sid,
            }
            assert policy["spec"]["podSelector"]["matchLabels"]["rsparkhub.io/session"] == sid
            command = driver["spec"]["containers"][0]["command"]
            for conf in (
                f"spark.driver.host={name}.{NS}.svc",
                f"spark.kubernetes.driver.pod.name={name}",
                f"spark.kubernetes.container.image={SPARK_IMAGE}",
                "spark.ui.proxyBase=/spark-ui/alice",
                "spark.sql.warehouse.dir=/opt/spark/work-dir/warehouse/u_alice",
            ):
                assert conf in command, conf
            assert svc["spec"]["selector"]["rsparkhub.io/session"] == sid
            assert {p["port"] for p in svc["spec"]["ports"]} == {15002, 7078, 7079, 4040}

            # --- the session's SPARK_REMOTE: its own driver, its own Spark session, its own
            # token; a secret (from the session's Secret, not in the pod spec)
            ref = _env(session_pod)["SPARK_REMOTE"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": session_pod["metadata"]["name"], "key": "SPARK_REMOTE"}
            remote = _secret_value(standin, ref)
            token = connect_token(hub, sid)
            assert remote == (
                f"sc://{name}.{NS}.svc:15002/;user_id=alice;session_id={spark_session_id(hub, sid)}"
                f";authorization=Bearer%20{token}"
            )
            # The driver's Spark Connect asks for that token: from the driver's Secret, which
            # goes with the session pod.
            ref = _env(driver)[sk.TOKEN_ENV]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": name, "key": sk.TOKEN_KEY}
            assert _secret_value(standin, ref) == token
            # … and its UI the key the hub signs the proxy's requests with
            ref = _env(driver)[sk.UI_KEY_ENV]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": name, "key": sk.UI_KEY_KEY}
            assert _secret_value(standin, ref) == ui_key(_secret(hub), f"session:{sid}")
            assert f"spark.ui.filters={UI_FILTER}" in command
            driver_secret = standin.get("secrets", NS, name)
            assert driver_secret["metadata"]["ownerReferences"] == [owner.reference()]
            assert "spark.authenticate=true" in driver["spec"]["containers"][0]["command"]

            # --- GET /api/spark
            mine = await c.request("GET", "/api/spark")
            assert mine["mode"] == "kubernetes" and mine["state"] == "running", mine
            assert mine["ui_url"] == "/spark-ui/alice/"
            assert mine["remote"] == f"sc://{name}.{NS}.svc:15002/;user_id=alice"
            assert "session_id" not in json.dumps(mine) and name in mine["detail"]
            other = await b.request("GET", "/api/spark")
            assert other["mode"] == "kubernetes" and other["state"] == "down"
            assert other["ui_url"] is None and other["remote"] is None

            # --- the UI: the owner and administrators; nobody else reaches the driver
            page = "/spark-ui/alice/jobs/"
            r = await anon.get(page)
            assert r.status_code == 401 and _error(r) == "unauthorized"
            r = await b.http.get(page)
            assert r.status_code == 403 and _error(r) == "forbidden", r.text
            assert "administrators" in r.json()["error"]["message"]
            assert driver_ui.requests == []
            r = await c.http.get(page)
            assert r.status_code == 200, r.text
            assert f"driver {name} in {NS}" in r.text
            assert r.headers["content-security-policy"] == UI_CSP
            assert "set-cookie" not in r.headers
            path, headers = driver_ui.requests[-1]
            assert path == f"/{NS}/{name}/jobs/"
            # nothing of the browser's; the hub's own signature for this driver's UI filter
            assert "cookie" not in headers and alice not in json.dumps(headers)
            claims = _verify_jws(headers["authorization"], ui_key(_secret(hub), f"session:{sid}"))
            assert claims["exp"] > time.time() > claims["iat"] - 60, claims
            # Jetty's absolute redirect comes back under the hub's path.
            r = await c.http.get("/spark-ui/alice/")
            assert r.status_code == 302 and r.headers["location"] == "/spark-ui/alice/jobs/"
            r = await admin.http.get(page)
            assert r.status_code == 200 and f"driver {name}" in r.text
            assert (await admin.request("GET", "/api/spark"))["ui_url"] is None  # root has none
            r = await b.http.get("/spark-ui/bob/jobs/")
            assert r.status_code == 404 and _error(r) == "spark_off", r.text

            # --- a second session of alice: the UI is its driver's; then back to the first
            wid2 = (await c.ensure_workspace("spark-2"))["id"]
            sid2 = (await c.start_session(wid2))["id"]
            name2 = sk.driver_name(sid2)
            driver2 = standin.get("pods", NS, name2)
            assert driver2 is not None and name2 != name
            assert driver2["spec"]["securityContext"]["runAsUser"] == uid  # stable per user
            r = await c.http.get(page)
            assert r.status_code == 200 and f"driver {name2} in {NS}" in r.text
            assert (await c.request("GET", "/api/spark"))["remote"].startswith(f"sc://{name2}.")
            assert standin.get("networkpolicies", NS, name2) is not None
            await c.stop_session(wid2)
            await standin.until(
                lambda: (
                    standin.get("services", NS, name2) is None
                    and standin.get("networkpolicies", NS, name2) is None
                ),
                20,
                "driver 2's Service and NetworkPolicy",
            )
            r = await c.http.get(page)
            assert r.status_code == 200 and f"driver {name} in {NS}" in r.text

        # --- a restarted hub adopts the session and keeps its driver
        driver_uid = driver["metadata"]["uid"]
        hub.restart()
        async with HubClient(hub.url, alice) as c:
            info = await c.request("GET", f"/api/workspaces/{wid}/session")
            assert info["id"] == sid and info["state"] in ("starting", "running"), info
            await _until_ui(c, "/spark-ui/alice/")
            assert standin.get("pods", NS, name)["metadata"]["uid"] == driver_uid
            r = await c.http.get(page)
            assert r.status_code == 200 and f"driver {name} in {NS}" in r.text

            # --- stopping the session deletes its driver (the hub's own DELETE calls)
            deletes_before = standin.count("delete", "services")
            policy_deletes_before = standin.count("delete", "networkpolicies")
            stopped = await c.stop_session(wid)
            assert stopped["state"] == "stopped", stopped
            await standin.until(
                lambda: (
                    standin.get("pods", NS, name) is None
                    and standin.get("services", NS, name) is None
                    and standin.get("networkpolicies", NS, name) is None
                    and standin.get("secrets", NS, name) is None
                ),
                20,
                "the driver's removal",
            )
            await standin.until(
                lambda: (
                    standin.count("delete", "services") == deletes_before + 1
                    and standin.count("delete", "networkpolicies") == policy_deletes_before + 1
                ),
                10,
                "the hub's DELETE of the Service and the NetworkPolicy",
            )
            info = await c.request("GET", "/api/spark")
            assert info["state"] == "down" and info["ui_url"] is None, info
            r = await c.http.get(page)
            assert r.status_code == 404 and _error(r) == "spark_off", r.text

            # --- a session pod deleted outside the hub takes its driver with it
            sid3 = (await c.start_session(wid))["id"]
            name3 = sk.driver_name(sid3)
            assert standin.get("services", NS, name3) is not None
            assert standin.get("networkpolicies", NS, name3) is not None
            standin.delete_pod(NS, f"rsparkhub-session-{sid3}", grace=0)
            info = await _until_state(c, wid, ("dead", "stopped"), timeout=20)
            assert info["id"] == sid3, info
            await standin.until(
                lambda: (
                    standin.get("pods", NS, name3) is None
                    and standin.get("services", NS, name3) is None
                    and standin.get("networkpolicies", NS, name3) is None
                    and standin.get("secrets", NS, name3) is None
                ),
                20,
                "the driver's removal with its session pod",
            )
            await _until_ui(c, None)
        assert standin.invalid == []
        await standin.until(
            lambda: (
                not standin.list("pods", NS)
                and not standin.list("services", NS)
                and not standin.list("networkpolicies", NS)
                and not standin.list("secrets", NS)
            ),
            20,
            "no pods, Services, NetworkPolicies or Secrets left",
        )
    finally:
        hub.close()


async def test_a_refused_driver_leaves_the_session_running(
    tmp_path: Path, driver_ui: DriverUI
) -> None:
    with StandIn(step_s=0.02, agent_root=tmp_path / "node") as standin:
        standin.set_scenario("agent")  # session pods run the real agent
        standin.refuse["services"] = FORBIDDEN
        hub = spark_hub(tmp_path, standin, driver_ui).start()
        try:
            dora = hub.make_user("dora")
            async with HubClient(hub.url, dora) as c:
                wid = (await c.ensure_workspace("no-spark"))["id"]
                async with c.attach(wid) as s:
                    states = [m for m in s.side if m.get("type") == "session_state"]
                    lines = [m.get("message") or "" for m in states]
                    # "running" may already have arrived while attaching (then it is in side)
                    if not any(m.get("state") == "running" for m in states):
                        async for msg in s.messages(timeout=60):
                            if msg.get("type") == "session_state":
                                lines.append(msg.get("message") or "")
                                if msg["state"] == "running":
                                    break
                    told = [ln for ln in lines if "Spark driver could not be created" in ln]
                    assert len(told) == 1, lines
                    assert "403 Forbidden" in told[0] and "rsparkhub-hub Role" in told[0]
                    assert "stop and start the session" in told[0]
                    # The session runs, with its SPARK_REMOTE (Spark calls fail to connect).
                    r = await s.run(
                        "import os; print(os.environ['SPARK_REMOTE'])", language="python"
                    )
                    assert r.ok, r
                    sid = s.session_id
                    name = sk.driver_name(sid)
                    assert r.stdout.startswith(f"sc://{name}.{NS}.svc:15002/;user_id=dora;")
                # The driver pod made before the Service was refused is gone again.
                await standin.until(
                    lambda: standin.get("pods", NS, name) is None, 20, "the half-made driver"
                )
                assert standin.get("services", NS, name) is None
                assert standin.get("secrets", NS, name) is None
                info = await c.request("GET", "/api/spark")
                assert info["state"] == "down" and info["ui_url"] is None, info
                assert "no Spark driver" in info["detail"] and "403" in info["detail"]
                r = await c.http.get("/spark-ui/dora/jobs/")
                assert r.status_code == 404 and _error(r) == "spark_off"
                async with HubClient(hub.url, hub.make_user("root", admin=True)) as admin:
                    doctor = (await admin.request("GET", "/api/doctor"))["spark"]
                assert doctor["mode"] == "kubernetes" and doctor["ok"] is False, doctor
                assert "403 Forbidden" in doctor["detail"] and doctor["drivers"] == 0
                log = hub.log_path.read_text()
                assert f"session {sid}: no Spark driver: " in log
                assert standin.token not in log
                stopped = await c.stop_session(wid)
                assert stopped["state"] == "stopped", stopped
            assert driver_ui.requests == []
        finally:
            hub.close()


def test_the_ui_url_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from rsparkhub.config import Settings

    for k in [k for k in os.environ if k.startswith("RSPARKHUB_")]:
        monkeypatch.delenv(k)
    base = {
        "spawner": "kubernetes",
        "spark": "kubernetes",
        "kubernetes_namespace": "team-a",
        "kubernetes_hub_url": "ws://rsparkhub-hub.team-a.svc:8000/agent/ws",
        "kubernetes_image": "reg/session:1",
    }
    cfg = sk.SparkK8sConfig.from_settings(Settings(**base))  # type: ignore[arg-type]
    assert sk.ui_url(cfg, "s1") == f"http://{sk.driver_name('s1')}.team-a.svc:4040"
    proxy = "http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{service}:4040/proxy/"
    cfg = sk.SparkK8sConfig.from_settings(Settings(**base, spark_kubernetes_ui_url=proxy))  # type: ignore[arg-type]
    assert sk.ui_url(cfg, "s1") == (
        f"http://127.0.0.1:8001/api/v1/namespaces/team-a/services/{sk.driver_name('s1')}:4040/proxy"
    )
    for bad in ("{service}.{namespace}.svc:4040", "http://{pod}:4040", "http://{service:4040"):
        with pytest.raises(ValidationError, match="spark_kubernetes_ui_url"):
            Settings(**base, spark_kubernetes_ui_url=bad)  # type: ignore[arg-type]
