"""All runtime settings, from `VDC_*` environment variables (one class, one place)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KNOWN_ARCHES = ("x86_64", "x86", "i686", "aarch64")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VDC_", extra="ignore")

    data_dir: Path = Field(
        default=Path("/var/lib/vdc"),
        description="Where vdc keeps its SQLite database, images and the admin key file.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite at DATA_DIR/vdc.sqlite3. "
        "PostgreSQL: postgresql+psycopg://user:password@host/dbname",
    )
    api_bind: str = Field(default="127.0.0.1:8000", description="HOST:PORT of the API and its docs")
    api_socket: str = Field(
        default="", description="Also serve the API on this unix socket path (empty: no socket)"
    )
    metadata_bind: str = Field(
        default="0.0.0.0:8775",
        description="HOST:PORT of the EC2 metadata listener",
    )
    metadata_max_connections: int = Field(
        default=512, ge=1, description="Open connections the metadata listener takes in all"
    )
    metadata_max_connections_per_source: int = Field(
        default=16, ge=1, description="Open metadata connections from one address (one guest)"
    )
    metadata_rate: float = Field(
        default=200.0,
        ge=0,
        description="Metadata requests a second one instance may make past its burst (0: any)",
    )
    metadata_burst: float = Field(
        default=1000.0, ge=1, description="Metadata requests one instance may make at once"
    )
    metadata_header_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a metadata client has to send a request head (and to idle)",
    )
    region: str = Field(
        default="vdc-1", description="Region shown by the metadata service; zone is region + 'a'"
    )
    metadata_token_secret: str = Field(
        default="", description="Signs IMDSv2 tokens; set it when replicas share guests"
    )
    metadata_proxy_secret: str = Field(
        default="", description="Shared with metadata proxies that sign X-Forwarded-For"
    )
    web_secret: str = Field(
        default="",
        description="Signs web UI session cookies; empty: a random one in DATA_DIR/web.secret",
    )
    libvirt_uri: str = Field(
        default="qemu:///system", description="URI `vdc-manage host add` uses when given none"
    )
    allow_test_hosts: bool = Field(
        default=False, description="Accept libvirt test:// host URIs (the test suites' fake host)"
    )
    host_uri_params: str = Field(
        default="",
        description="Comma-separated libvirt URI parameters a host URI may carry beyond the "
        "safe ones, e.g. socket,command: they open or run local things, so only operators "
        "who need them should allow them",
    )
    ssh_options: str = Field(
        default="",
        description="Extra ssh options for the host steps vdc runs over ssh (bridges, VXLAN), "
        "e.g. '-i /root/.ssh/vdc -o UserKnownHostsFile=/etc/vdc/known_hosts'",
    )
    virt_type: str = Field(default="auto", description="auto, kvm or qemu")
    import_dirs: str = Field(
        default="",
        description="Comma-separated folders that `image add local` may read from; "
        "empty means DATA_DIR/import",
    )
    max_image_size: int = Field(
        default=64 * 1024**3, description="Largest image file accepted, in bytes (upload or local)"
    )
    qemu_img: str = Field(default="qemu-img", description="qemu-img binary")
    cpu_allocation_ratio: float = Field(
        default=4.0, gt=0, description="Virtual cores placed per host core (CPU overcommit)"
    )
    memory_allocation_ratio: float = Field(
        default=1.0, gt=0, description="Guest memory placed per MiB of host memory"
    )
    workers: int = Field(default=4, ge=0, le=64, description="Job worker threads (0: no worker)")
    job_lease_seconds: float = Field(
        default=15.0, gt=0, description="A job whose worker stops renewing it is retried after this"
    )
    sync_interval: float = Field(
        default=5.0, gt=0, description="Seconds between host/instance state syncs"
    )
    stop_timeout: float = Field(
        default=60.0, ge=0, description="Seconds a guest gets to shut down before it is forced off"
    )
    max_volume_size: int = Field(
        default=2 * 1024, ge=1, description="Largest volume accepted, in GiB"
    )
    console_max_connections: int = Field(
        default=64,
        ge=1,
        description="Instance screens (VNC consoles) open at once through this server",
    )
    detach_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a running guest gets to release a volume being detached",
    )

    # Quotas: each account's default limits (an admin overrides them per account);
    # -1 is unlimited, 0 allows none. The system account a-shpoolxx has no quota.
    quota_instances: int = Field(default=20, ge=-1, description="Instances not terminated")
    quota_cores: int = Field(default=64, ge=-1, description="vCPU cores of those instances")
    quota_memory_mib: int = Field(
        default=128 * 1024, ge=-1, description="MiB of memory of those instances"
    )
    quota_volume_gib: int = Field(
        default=2048, ge=-1, description="GiB of volumes not deleted, root disks included"
    )
    quota_images: int = Field(default=20, ge=-1, description="Images an account owns")
    quota_image_gib: int = Field(default=512, ge=-1, description="GiB of image files it owns")
    quota_security_groups: int = Field(
        default=50, ge=-1, description="Security groups besides `default`"
    )
    quota_key_pairs: int = Field(default=50, ge=-1, description="SSH key pairs")

    @field_validator("virt_type")
    @classmethod
    def _known_virt_type(cls, value: str) -> str:
        if value not in ("auto", "kvm", "qemu"):
            raise ValueError("VDC_VIRT_TYPE must be auto, kvm or qemu")
        return value

    @field_validator("api_bind", "metadata_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_bind(value)
        return value

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vdc.sqlite3'}"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def instance_dir(self) -> Path:
        """Instance root disks: the libvirt storage pool `vdc-instances` on each host."""
        return self.data_dir / "instances"

    @property
    def volume_dir(self) -> Path:
        """Volumes: the libvirt storage pool `vdc-volumes` on each host."""
        return self.data_dir / "volumes"

    @property
    def console_dir(self) -> Path:
        return self.data_dir / "consoles"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def metadata_metrics_file(self) -> Path:
        """The metadata process's counts, for GET /metrics (metadata/stats.py)."""
        return self.data_dir / "run" / "metadata-metrics.json"

    @property
    def job_doorbell(self) -> Path:
        """The socket `vdc serve`'s job process is woken through (app/job_doorbell.py)."""
        return self.data_dir / "run" / "jobs.sock"

    @property
    def job_metrics_file(self) -> Path:
        """The job process's launch durations, for GET /metrics (app/job_process.py)."""
        return self.data_dir / "run" / "job-metrics.prom"

    @property
    def allowed_import_dirs(self) -> list[Path]:
        if not self.import_dirs.strip():
            return [self.data_dir / "import"]
        return [Path(part.strip()) for part in self.import_dirs.split(",") if part.strip()]


def split_bind(bind: str) -> tuple[str, int]:
    """'127.0.0.1:8000' -> ('127.0.0.1', 8000); '[::1]:80' -> ('::1', 80)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def get_settings() -> Settings:
    return Settings()
