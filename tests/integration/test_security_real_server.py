"""What an anonymous client or a guest could do to a real `vdc serve` (issue: no way from a
guest or an anonymous request to the control plane): bodies that are never read, a flood
of idle metadata connections that cannot starve the API, slow clients cut off, and a data
dir no other local user can read."""

from __future__ import annotations

import resource
import socket
import stat
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.served import Served, vdc_serve

FOUR_HUNDRED_MIB = 400 * 1024 * 1024


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, free_tcp_port_factory: Callable[[], int]
) -> Iterator[Served]:
    with vdc_serve(
        tmp_path_factory.mktemp("served"),
        free_tcp_port_factory,
        VDC_METADATA_HEADER_TIMEOUT="1",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def free_tcp_port_factory() -> Callable[[], int]:
    def free() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    return free


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def ask_with_headers_only(port: int, request: bytes, wait: float = 3.0) -> bytes:
    """Sends a request head that promises a body, sends no body, and returns whatever the
    server answers within `wait` seconds (b"" if it is still waiting for the body)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(request)
        try:
            while chunk := conn.recv(65536):
                received += chunk
                conn.settimeout(0.5)  # the rest of an answer follows at once
        except TimeoutError:
            pass
    return received


def test_an_anonymous_body_is_refused_before_a_byte_of_it_is_read(served: Served) -> None:
    head = (
        b"POST /api/v1/instances HTTP/1.1\r\nHost: vdc\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % FOUR_HUNDRED_MIB
    )
    answer = ask_with_headers_only(port_of(served.base), head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"missing API key" in answer
    # A page's form: sent to the sign-in page, the body never read either.
    page = ask_with_headers_only(
        port_of(served.base),
        b"POST /instances HTTP/1.1\r\nHost: vdc\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: %d\r\n\r\n" % FOUR_HUNDRED_MIB,
    )
    assert page.startswith(b"HTTP/1.1 303") and b"location: /login" in page.lower()


def test_octet_stream_does_not_lift_the_limit_of_other_routes(served: Served) -> None:
    head = (
        b"POST /api/v1/instances HTTP/1.1\r\nHost: vdc\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % (served.admin_key.encode(), FOUR_HUNDRED_MIB)
    )
    answer = ask_with_headers_only(port_of(served.base), head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_idle_metadata_connections_cannot_starve_the_api(served: Served) -> None:
    """1,100 idle connections from one address (more than the process's default 1,024 open
    files) used to make /healthz fail with "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(1100):
            conn = socket.socket()
            conn.settimeout(5)
            try:
                conn.connect(("127.0.0.1", served.metadata_port))
            except OSError:
                refused += 1
                conn.close()
                continue
            held.append(conn)
        started = time.monotonic()
        health = httpx.get(f"{served.base}/healthz", timeout=5)
        assert health.status_code == 200
        assert time.monotonic() - started < 1.0
        # Past the per-source cap (16) the listener answers 429 (a second later) and closes.
        # The first 16 are cut off by the 1 s header deadline, which frees their places:
        # a connection accepted after that is let in (and cut off in turn), so only those
        # right past the cap are sure to be refused.
        answers = [answer_of(conn) for conn in held]
        past_cap = answers[16:66]
        assert all(a.startswith(b"HTTP/1.1 429") for a in past_cap), past_cap
        assert b"Retry-After: 1" in past_cap[0]
        # An operator sees them: each refused connection is counted (published within a
        # second, so waited for).
        refusals = sum(a.startswith(b"HTTP/1.1 429") for a in answers)
        deadline = time.monotonic() + 15
        while (counted := refused_connections(served, 429)) < refusals:
            assert time.monotonic() < deadline, (counted, refusals)
            time.sleep(0.2)
    finally:
        for conn in held:
            conn.close()


def answer_of(conn: socket.socket) -> bytes:
    try:
        return conn.recv(200)
    except TimeoutError:
        return b"<nothing>"


def refused_connections(served: Served, status: int) -> float:
    """vdc_metadata_requests_total{path="other",status=STATUS} from the API's /metrics."""
    scraped = httpx.get(
        f"{served.base}/metrics",
        headers={"Authorization": f"Bearer {served.admin_key}"},
        timeout=5,
    )
    assert scraped.status_code == 200, scraped.text
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "vdc_metadata_requests_total" and sample.labels == {
                "path": "other",
                "status": str(status),
            }:
                return float(sample.value)
    return 0.0


def test_a_client_that_never_finishes_its_request_is_cut_off(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.metadata_port), timeout=5) as conn:
        conn.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n")  # no end
        started = time.monotonic()
        assert conn.recv(100) == b""  # closed by the server, not answered
        assert time.monotonic() - started < 4  # VDC_METADATA_HEADER_TIMEOUT is 1 s here
    with socket.create_connection(("127.0.0.1", served.metadata_port), timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(100) == b""  # a connection that says nothing at all, too
        assert time.monotonic() - started < 4


def test_a_complete_request_is_still_answered(served: Served) -> None:
    """The limits take nothing from a well-behaved client (not a guest here: a 404)."""
    with socket.create_connection(("127.0.0.1", served.metadata_port), timeout=5) as conn:
        conn.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 404")


def test_no_other_local_user_can_read_the_data_dir(served: Served) -> None:
    """The SQLite file holds every tenant's user-data."""
    mode = stat.S_IMODE(served.data_dir.stat().st_mode)
    assert mode & 0o077 == 0o011, oct(mode)  # others may pass through, not list or read
    for name in ("vdc.sqlite3", "admin.key", "web.secret"):
        path = served.data_dir / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (name, oct(path.stat().st_mode))
    assert (served.data_dir / "vdc.sqlite3").exists()
    for path in served.data_dir.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o004 == 0, f"{path} is world-readable"
