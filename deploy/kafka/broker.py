"""A real single-node Apache Kafka broker (KRaft), run from Maven Central jars with local Java.

No Docker engine runs on the machines cxpulse is developed on, so the project brings its own broker:
Maven resolves the pinned broker and its classpath into ~/.m2 and copies the jars under the data
dir, the storage is formatted once, and the JVM runs `kafka.Kafka` on loopback. A broker started
for a parent process (tests, `cxpulse up`) dies with that parent, so nothing is left behind even
when the parent is killed.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_PKG = resources.files("cxpulse.deploy.kafka")
_PR_SET_PDEATHSIG = 1
_MIN_JAVA = 17


class KafkaError(RuntimeError):
    """Raised with a message meant for the person running the command."""


def kafka_version() -> str:
    """The pinned broker version, read from the pom so there is one place to bump it."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", (_PKG / "pom.xml").read_text())
    if match is None:  # pragma: no cover - guarded by the pom in the repo
        raise KafkaError("deploy/kafka/pom.xml has no <kafka.version> property")
    return match.group(1)


def require_tool(name: str, purpose: str, install_hint: str) -> str:
    """Path of an executable, or an error that names exactly what is missing and how to get it."""
    path = shutil.which(name)
    if path is None:
        raise KafkaError(
            f"'{name}' was not found on PATH; it is needed to {purpose}. {install_hint} "
            "Alternatively set CXPULSE_KAFKA_BOOTSTRAP to an existing Kafka broker."
        )
    return path


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise KafkaError(f"could not read the Java version from `{java} -version`: {out.stderr!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def new_cluster_id() -> str:
    """A KRaft cluster id: 22 base64url characters, never starting with '-' (which the storage
    tool's argument parser would take for an option, as Kafka's own generator also avoids)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now (for tests and ad-hoc brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def die_with_parent() -> None:
    """Runs in the forked child: the kernel sends SIGTERM when the parent exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it has exited for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass(frozen=True)
class BrokerConfig:
    home: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    # Jars may be shared by several homes (tests start brokers in temporary homes).
    libs_dir: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class KafkaBroker:
    """Fetch, format, start, stop and inspect one local broker living under `config.home`."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.version = kafka_version()
        home = config.home
        self.libs_dir = config.libs_dir or home / f"libs-{self.version}"
        self.data_dir = home / "data"
        self.logs_dir = home / "logs"
        self.properties_file = home / "server.properties"
        self.pid_file = home / "broker.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- jars -----------------------------------------------------------------------------------

    def fetch(self, progress: bool = True) -> Path:
        """Resolve the broker's jars with Maven (cached in ~/.m2) and copy them under the home."""
        pom = (_PKG / "pom.xml").read_bytes()
        stamp = self.libs_dir / ".pom-sha256"
        digest = hashlib.sha256(pom).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            return self.libs_dir
        mvn = require_tool(
            "mvn",
            f"resolve the Apache Kafka {self.version} broker jars from Maven Central",
            "Install Apache Maven 3.6+ (e.g. `apt-get install maven`).",
        )
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        pom_path = self.libs_dir.parent / "pom.xml"
        pom_path.write_bytes(pom)
        if self.libs_dir.exists():
            shutil.rmtree(self.libs_dir)
        if progress:
            print(
                f"Resolving Apache Kafka {self.version} with Maven into ~/.m2 "
                f"(the first run downloads about 60 MB) ...",
                flush=True,
            )
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs_dir}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(
                "Maven could not resolve the Kafka broker jars "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        stamp.write_text(digest)
        return self.libs_dir

    # -- lifecycle ------------------------------------------------------------------------------

    def _java(self) -> str:
        java = require_tool(
            "java",
            f"run the Apache Kafka {self.version} broker",
            f"Install a Java runtime {_MIN_JAVA}+ "
            "(e.g. `apt-get install openjdk-17-jre-headless`).",
        )
        major = java_major_version(java)
        if major < _MIN_JAVA:
            raise KafkaError(
                f"Kafka {self.version} needs Java {_MIN_JAVA}+, but `{java}` is Java {major}. "
                f"Install Java {_MIN_JAVA}+ and put it first on PATH."
            )
        return java

    def _write_properties(self) -> None:
        c = self.config
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{c.port},CONTROLLER://127.0.0.1:{c.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{c.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{c.controller_port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # One node: internal topics cannot have more replicas than there are brokers.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Consumers join at once instead of waiting 3 s for more members (tests, `up`).
            "group.initial.rebalance.delay.ms": "0",
            # cxpulse creates its topics explicitly with the configured partition count.
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            # Kafka's default message limit (1 MiB) is kept, as on the compose broker: cxpulse's
            # bounds (docs/decisions.md) keep every message it writes within it.
        }
        text = "".join(f"{key}={value}\n" for key, value in props.items())
        self.properties_file.write_text("# Written by cxpulse on every start.\n" + text)

    def _format_storage(self, java: str) -> None:
        """Format KRaft storage once; the ports it was formatted with must not change later."""
        formatted = self.config.home / "formatted.json"
        if (self.data_dir / "meta.properties").exists():
            previous = json.loads(formatted.read_text()) if formatted.exists() else {}
            if previous.get("controller_port") not in (None, self.config.controller_port):
                raise KafkaError(
                    f"the broker data in {self.data_dir} was formatted for controller port "
                    f"{previous['controller_port']}, not {self.config.controller_port}; use that "
                    "port or delete the data directory to start afresh."
                )
            return
        cmd = [
            java,
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={new_cluster_id()}",
            "-c",
            str(self.properties_file),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
        formatted.write_text(json.dumps({"controller_port": self.config.controller_port}))

    def running_pid(self) -> int | None:
        """Pid of this home's broker if it runs (checked against the process's command line)."""
        try:
            pid = int(json.loads(self.pid_file.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if b"kafka.Kafka" not in cmdline or str(self.properties_file).encode() not in cmdline:
            return None  # the pid was reused by something else
        return pid if _pid_alive(pid) else None

    def start(self, *, attached: bool, timeout_s: float = 90.0) -> None:
        """Start the broker and return once it accepts clients.

        attached=True ties the broker's life to this process (tests, `cxpulse up`);
        attached=False leaves it running for `cxpulse kafka stop`.
        """
        c = self.config
        if self.running_pid() is not None:
            raise KafkaError(
                f"a cxpulse broker already runs from {c.home} "
                f"(pid {self.running_pid()}, {c.bootstrap}); stop it with `cxpulse kafka stop`."
            )
        for name, port in (("client", c.port), ("controller", c.controller_port)):
            if not port_is_free(port):
                env = "CXPULSE_KAFKA_PORT" if name == "client" else "CXPULSE_KAFKA_CONTROLLER_PORT"
                raise KafkaError(
                    f"port {port} on 127.0.0.1 (the broker's {name} port) is already in use by "
                    f"another process; stop that process or choose another port with {env}."
                )
        java = self._java()
        self.fetch()
        for directory in (self.data_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        self._format_storage(java)
        cmd = [
            java,
            f"-Xmx{c.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={_PKG / 'log4j2.xml'}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with (self.logs_dir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent, not the broker
                preexec_fn=die_with_parent if attached else None,
            )
        self.pid_file.write_text(
            json.dumps({"pid": self._proc.pid, "bootstrap": c.bootstrap, "version": self.version})
        )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise KafkaError(
                    f"the Kafka broker exited with code {self._proc.returncode} while starting; "
                    f"last lines of {self.logs_dir / 'server.log'}:\n{self.log_tail()}"
                )
            if _accepts_connections(self.config.port) and self._has_metadata():
                return
            time.sleep(0.2)
        self.stop()
        raise KafkaError(
            f"the Kafka broker did not accept clients within {timeout_s:.0f} s; last log lines:\n"
            f"{self.log_tail()}"
        )

    def _has_metadata(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.config.bootstrap, "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:  # KafkaException while the broker is still electing itself
            return False

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after timeout_s). Returns whether one ran."""
        pid = self._proc.pid if self._proc is not None else self.running_pid()
        if pid is None or not _pid_alive(pid):
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=10)  # reap: no zombie left behind
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict[str, object]:
        pid = self.running_pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self.config.bootstrap,
            "accepting_clients": pid is not None and _accepts_connections(self.config.port),
            "version": self.version,
            "home": str(self.config.home),
            "log": str(self.logs_dir / "server.log"),
        }

    def log_tail(self, lines: int = 20) -> str:
        for name in ("server.log", "stdout.log"):
            path = self.logs_dir / name
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log output)"
