"""The container image as a user runs it: built by `scripts/container` from the binary under test,
started with `podman run` (published port, a named volume for the SQLite database, providers from
the environment), answering `/healthz` and a chat completion through the official `openai` SDK,
proxied to a mock upstream on the host; the same image on PostgreSQL and Redis; and the compose
file for the scale-out setup (its wiring: its images come from a registry).

Without podman the image test is skipped, unless `PORTCULLIS_REQUIRE_CONTAINER_TEST=1` (CI and
`scripts/container --test` set it): then a missing podman is a failure.
"""

import os
import resource
import shutil
import subprocess
import time
import uuid

import httpx
import openai
import pytest
import yaml

from conftest import MASTER_KEY, OPENAI_KEY, ROOT, _bin, _free_port

REQUIRED = os.environ.get("PORTCULLIS_REQUIRE_CONTAINER_TEST") == "1"
UID = 10001


def _podman() -> str:
    path = shutil.which("podman")
    if path is None:
        message = "podman is not installed (Debian: apt-get install podman runc)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _host_quirks() -> list:
    """`podman run` options for runners like CI's: podman raises a container's limits to the
    maximum by default, which a runner without CAP_SYS_RESOURCE refuses, so the container gets the
    runner's own; and crun 1.8 refuses hosts with hybrid cgroups (v1 with a v2 `unified` mount),
    which runc runs."""
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    args = ["--ulimit", "nproc=4096:4096"]
    if nofile != resource.RLIM_INFINITY:
        args += ["--ulimit", f"nofile={nofile}:{nofile}"]
    if os.path.isdir("/sys/fs/cgroup/unified") and shutil.which("runc"):
        args += ["--runtime", "runc"]
    return args


def _run(*args, check=True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 or not check, f"{' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image():
    podman = _podman()
    tag = os.environ.get("PORTCULLIS_CONTAINER_IMAGE")
    if tag:
        yield tag
        return
    tag = f"localhost/portcullis-e2e:{uuid.uuid4().hex[:12]}"
    subprocess.run([str(ROOT / "scripts" / "container"), "--binary", _bin("PORTCULLIS_BIN", "portcullis"),
                    "--tag", tag], check=True, timeout=300)
    yield tag
    _run(podman, "rmi", "-f", tag, check=False)


@pytest.fixture()
def host_mock():
    """A mock upstream the container can reach: listening on every address of the host."""
    proc = subprocess.Popen([_bin("MOCK_UPSTREAM_BIN", "mock-upstream"), "--listen", "0.0.0.0:0"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    yield int(line.rsplit(":", 1)[1])
    proc.terminate()
    proc.wait(timeout=10)


def _start(podman: str, image: str, name: str, url: str, *args) -> str:
    """Starts the image detached and waits until it is ready; returns the container id."""
    container = _run(podman, "run", "-d", "--name", name, *_host_quirks(),
                     "-e", f"PORTCULLIS_MASTER_KEY={MASTER_KEY}", "-e", f"OPENAI_API_KEY={OPENAI_KEY}",
                     "-e", "PORTCULLIS_LOG=warn", *args, image)
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return container
        except httpx.HTTPError:
            pass
        state = _run(podman, "inspect", "--format", "{{.State.Status}}", container)
        assert state == "running" and time.time() < deadline, \
            f"not ready ({state}): {_run(podman, 'logs', container, check=False)}"
        time.sleep(0.2)


def _health_chat_and_log(url: str) -> None:
    """`/healthz`, one chat completion through the `openai` SDK, and its record in the log."""
    assert httpx.get(f"{url}/healthz").status_code == 200
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=16)
    assert raw.parse().choices[0].message.content == "Hello from the mock! You said: hi"
    assert raw.headers["x-portcullis-provider"] == "openai"
    request_id = raw.headers["x-portcullis-request-id"]
    deadline = time.time() + 10
    while True:
        logs = httpx.get(f"{url}/admin/logs", headers={"authorization": f"Bearer {MASTER_KEY}"}).json()
        if any(r["id"] == request_id and r["status"] == 200 for r in logs["data"]):
            return
        assert time.time() < deadline, logs
        time.sleep(0.1)


def _stop_cleanly(podman: str, container: str) -> None:
    """SIGTERM (`podman stop`) drains the gateway, which exits with status 0."""
    _run(podman, "stop", "-t", "30", container)
    assert _run(podman, "inspect", "--format", "{{.State.ExitCode}}", container) == "0", \
        _run(podman, "logs", container, check=False)


def test_image_serves_health_and_a_proxied_chat_as_non_root(image, host_mock):
    podman = _podman()
    config = _run(podman, "image", "inspect", "--format", "{{.Config.User}} {{.Config.Env}}", image)
    assert config.startswith(f"{UID}:{UID} "), config
    assert "PORTCULLIS_LISTEN=0.0.0.0:8800" in config

    # As a user runs it: the default port published, the database in a named volume, the
    # upstream reached through the host's address.
    name = f"portcullis-e2e-{uuid.uuid4().hex[:12]}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    container = None
    try:
        container = _start(podman, image, name, url, "-p", f"127.0.0.1:{port}:8800", "-v", f"{name}:/data",
                           "-e", f"OPENAI_BASE_URL=http://host.containers.internal:{host_mock}/v1")
        _health_chat_and_log(url)

        pid = _run(podman, "inspect", "--format", "{{.State.Pid}}", container)
        with open(f"/proc/{pid}/status") as status:
            uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        assert uids == [str(UID)] * 4, uids
        volume = _run(podman, "volume", "inspect", "--format", "{{.Mountpoint}}", name)
        db = os.stat(os.path.join(volume, "portcullis.db"))
        assert (db.st_uid, db.st_gid) == (UID, UID), "the SQLite file is in the volume, the user's"
        _stop_cleanly(podman, container)
    finally:
        if container is not None:
            _run(podman, "rm", "-f", "-v", container, check=False)
        _run(podman, "volume", "rm", "-f", name, check=False)


def test_image_on_postgres_and_redis(image, host_mock):
    """The scale-out configuration of compose.yaml, on the PostgreSQL and Redis of the test
    machine (the host's network: they listen on its loopback), in a schema of its own."""
    podman = _podman()
    schema = f"t_{uuid.uuid4().hex}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "test", "-qtAc"]
    _run(*psql, f"CREATE SCHEMA {schema}")
    name = f"portcullis-e2e-{uuid.uuid4().hex[:12]}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    container = None
    try:
        container = _start(
            podman, image, name, url, "--network", "host",
            "-e", f"PORTCULLIS_LISTEN=127.0.0.1:{port}",
            "-e", f"PORTCULLIS_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?options[search_path]={schema}",
            "-e", "PORTCULLIS_REDIS_URL=redis://127.0.0.1:6379",
            "-e", f"OPENAI_BASE_URL=http://127.0.0.1:{host_mock}/v1",
        )
        _health_chat_and_log(url)
        tables = _run(*psql, f"SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'")
        assert int(tables) > 0, "the gateway's tables are in PostgreSQL"
        _stop_cleanly(podman, container)
    finally:
        if container is not None:
            _run(podman, "rm", "-f", "-v", container, check=False)
        _run(*psql, f"DROP SCHEMA IF EXISTS {schema} CASCADE", check=False)


def test_compose_file_wires_the_gateway_to_postgres_and_redis():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis"} <= services.keys()
    gateways = [s for s in services.values() if "portcullis" in s.get("image", "")]
    assert len(gateways) >= 2, "the scale-out setup runs several replicas"
    for gw in gateways:
        assert gw["image"] == "localhost/portcullis:latest", "the tag scripts/container builds"
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in gw["environment"])
        assert env["PORTCULLIS_DATABASE_URL"].startswith("postgres://")
        assert "@postgres:5432/" in env["PORTCULLIS_DATABASE_URL"]
        assert env["PORTCULLIS_REDIS_URL"] == "redis://redis:6379"
        assert env["PORTCULLIS_MASTER_KEY"].startswith("${PORTCULLIS_MASTER_KEY:?"), "one key for every replica"
        assert set(gw["depends_on"]) == {"postgres", "redis"}
        assert any(p.endswith(":8800") for p in gw["ports"])
