"""Hosts as Linux network namespaces, joined to the root namespace on 198.18.0.0/15.

Each host is a named netns (``pxc<pid>-gw1``) with one veth pair: its inner end
holds the host's address, its outer end sits on a root-side bridge that holds the
*infra address* (``198.18.N.1``), where everything the hosts must reach listens
(nginx, Redis, PostgreSQL). When a bridge cannot be made, each outer end gets a
``/32`` route instead and the infra address sits on ``lo``: the hosts see the same
addresses either way.

Every name starts with ``pxc<pid>`` (the pid of the process that owns the run), so
:func:`sweep` can remove what a crashed run left behind, and only when that pid is
dead. Needs root (``ip netns``).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

PREFIX = "pxc"
#: 198.18.0.0/15 is reserved for benchmarking (RFC 2544): never routed anywhere real.
BENCH_NETWORK = ipaddress.ip_network("198.18.0.0/15")
#: Host addresses are 198.18.N.(FIRST_HOST + i).
FIRST_HOST = 10
MAX_HOSTS = 200
#: Where a run's /24 is chosen: 198.18.N.0/24.
_SUBNETS = ipaddress.ip_network("198.18.0.0/16")
_OWNED = re.compile(rf"^{PREFIX}(\d+)")

Mode = Literal["bridge", "routed"]
IP = shutil.which("ip") or "/usr/sbin/ip"


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries the command and its stderr."""


def ip(*args: str, check: bool = True, timeout: float = 10.0) -> str:
    """Run ``ip ARGS`` and return its stdout (``NetnsError`` on failure when ``check``)."""
    result = subprocess.run(
        [IP, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def owner_pid(name: str) -> int | None:
    """The pid embedded in a ``pxc<pid>...`` name, or None for a name that is not ours."""
    match = _OWNED.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Host:
    """One host: a network namespace with one address, reached from the root namespace."""

    name: str
    netns: str
    address: str
    #: The root-side end of the host's veth pair.
    link_name: str = ""
    #: The host's default gateway: the infra address.
    gateway: str = ""

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (``ip netns exec`` execs it: same pid)."""
        return [IP, "netns", "exec", self.netns, *argv]

    def link(self, up: bool) -> None:
        """Connect (``up``) or cut the host's only link, as a pulled cable would.

        The inner end goes down: the outer end loses its carrier but keeps its routes
        (marked ``linkdown``), so packets for the host are dropped and never take the
        default route out of the machine.
        """
        ip("-n", self.netns, "link", "set", "dev", "eth0", "up" if up else "down")
        if up:  # the namespace's routes went down with its link
            inside = ("-n", self.netns, "route", "replace")
            ip(*inside, f"{self.gateway}/32", "dev", "eth0")
            ip(*inside, "default", "via", self.gateway)

    def pids(self) -> list[int]:
        """The processes running in this host's namespace."""
        return netns_pids(self.netns)

    def to_json(self) -> dict[str, str]:
        return {
            "netns": self.netns,
            "address": self.address,
            "link": self.link_name,
            "gateway": self.gateway,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, str]) -> Host:
        return cls(
            name, data["netns"], data["address"], data.get("link", ""), data.get("gateway", "")
        )


def netns_pids(netns: str) -> list[int]:
    """The pids in namespace ``netns`` (none when it is gone)."""
    out = ip("netns", "pids", netns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_netns_processes(netns: str, *, grace: float = 3.0) -> None:
    """SIGTERM every process in ``netns``, then SIGKILL what is left after ``grace`` seconds.

    A named netns is a bind mount that outlives its processes, and deleting it does
    not stop them: a server left inside would keep its address forever.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)  # poll interval


class Topology:
    """N named hosts on one /24 of 198.18.0.0/15, made on enter and removed on exit.

    ``with Topology(["gw1", "gw2"]) as topo: topo.hosts["gw1"].address``. Removal is
    idempotent and also registered with ``atexit``, so an interrupted run leaves nothing.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        owner: int | None = None,
        mode: Mode | None = None,
        subnet: int | None = None,
    ) -> None:
        if len(set(names)) != len(names) or not 0 < len(names) <= MAX_HOSTS:
            raise ValueError(f"need 1 to {MAX_HOSTS} distinct host names, got {list(names)}")
        self.names = list(names)
        self.owner = owner if owner is not None else os.getpid()
        self.prefix = f"{PREFIX}{self.owner}"
        self.wanted_mode = mode
        self.wanted_subnet = subnet
        self.mode: Mode = "bridge"
        self.subnet = 0
        self.hosts: dict[str, Host] = {}
        self._made_netns: list[str] = []
        self._made_links: list[str] = []
        self._lo_address: str | None = None
        self._closed = False

    # -- addresses ------------------------------------------------------------------------------
    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"198.18.{self.subnet}.0/24")

    @property
    def infra_address(self) -> str:
        """Where the hosts reach the root namespace: bind shared servers here."""
        return f"198.18.{self.subnet}.1"

    @property
    def bridge_name(self) -> str:
        return f"{self.prefix}br"

    # -- life cycle -----------------------------------------------------------------------------
    def __enter__(self) -> Topology:
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self.subnet = self.wanted_subnet if self.wanted_subnet is not None else free_subnet()
        if self.wanted_mode in (None, "bridge") and self._try_bridge():
            self.mode = "bridge"
        elif self.wanted_mode == "bridge":
            raise NetnsError("a bridge was asked for and cannot be made")
        else:
            self.mode = "routed"
            self._lo_address = f"{self.infra_address}/32"
            ip("addr", "add", self._lo_address, "dev", "lo", "label", f"lo:{self.prefix}")
        for index, name in enumerate(self.names):
            self.hosts[name] = self._make_host(index, name)

    def _try_bridge(self) -> bool:
        """Make the bridge holding the infra address; False when the kernel refuses."""
        try:
            ip("link", "add", self.bridge_name, "type", "bridge")
        except NetnsError:
            return False
        self._made_links.append(self.bridge_name)
        ip("addr", "add", f"{self.infra_address}/24", "dev", self.bridge_name)
        ip("link", "set", "dev", self.bridge_name, "up")
        return True

    def _make_host(self, index: int, name: str) -> Host:
        netns = f"{self.prefix}-{name}"
        outer = f"{self.prefix}h{index}"
        if len(outer) > 15:
            raise NetnsError(f"interface name {outer!r} is longer than 15 characters")
        address = str(self.network.network_address + FIRST_HOST + index)
        ip("netns", "add", netns)
        self._made_netns.append(netns)
        # The inner end is made inside the namespace: its name only has to be unique there.
        ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self._made_links.append(outer)
        inside = ("-n", netns)
        ip(*inside, "link", "set", "dev", "lo", "up")
        if self.mode == "bridge":
            ip("link", "set", "dev", outer, "master", self.bridge_name)
            ip(*inside, "addr", "add", f"{address}/24", "dev", "eth0")
            ip(*inside, "link", "set", "dev", "eth0", "up")
        else:
            ip(*inside, "addr", "add", f"{address}/32", "dev", "eth0")
            ip(*inside, "link", "set", "dev", "eth0", "up")
            ip(*inside, "route", "add", f"{self.infra_address}/32", "dev", "eth0")
        ip("link", "set", "dev", outer, "up")
        if self.mode == "routed":
            ip("route", "add", f"{address}/32", "dev", outer, "src", self.infra_address)
        ip(*inside, "route", "add", "default", "via", self.infra_address)
        return Host(name, netns, address, outer, self.infra_address)

    def close(self) -> None:
        """Stop every process in the hosts, delete the namespaces, links and addresses."""
        if self._closed:
            return
        self._closed = True
        for netns in self._made_netns:
            kill_netns_processes(netns)
        for netns in reversed(self._made_netns):
            ip("netns", "delete", netns, check=False)
        for link in reversed(self._made_links):  # veths died with their netns: no error then
            if link_exists(link):
                ip("link", "delete", link, check=False)
        if self._lo_address:
            ip("addr", "del", self._lo_address, "dev", "lo", check=False)
        atexit.unregister(self.close)

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "network": str(self.network),
            "infra_address": self.infra_address,
            "hosts": {name: host.to_json() for name, host in self.hosts.items()},
        }


def link_exists(name: str) -> bool:
    return bool(ip("-o", "link", "show", "dev", name, check=False).strip())


def _addresses() -> list[dict[str, object]]:
    return json.loads(ip("-j", "addr", "show") or "[]")


def free_subnet(limit: int = 256) -> int:
    """The first N whose 198.18.N.0/24 no interface uses (another run may hold 198.18.0.0/24)."""
    used: set[int] = set()
    for link in _addresses():
        for info in link.get("addr_info", []):  # type: ignore[union-attr]
            local = info.get("local", "")
            with contextlib.suppress(ValueError):
                addr = ipaddress.ip_address(local)
                if addr in _SUBNETS:
                    used.add(addr.packed[2])
    for candidate in range(limit):
        if candidate not in used:
            return candidate
    raise NetnsError("no free /24 left in 198.18.0.0/16")


def sweep(*, dead_only: bool = True) -> list[str]:
    """Remove namespaces, links and ``lo`` addresses of runs whose owner pid is dead.

    Returns what it removed, for the log. A live owner's things are never touched.
    """
    removed: list[str] = []

    def stale(name: str) -> bool:
        pid = owner_pid(name)
        return pid is not None and not (dead_only and pid_alive(pid))

    for line in ip("netns", "list", check=False).splitlines():
        netns = line.split()[0] if line.split() else ""
        if stale(netns):
            kill_netns_processes(netns, grace=1.0)
            ip("netns", "delete", netns, check=False)
            removed.append(f"netns {netns}")
    for link in json.loads(ip("-j", "link", "show", check=False) or "[]"):
        name = str(link.get("ifname", ""))
        if stale(name):
            ip("link", "delete", name, check=False)
            removed.append(f"link {name}")
    for info in _lo_infos():
        label = str(info.get("label", ""))
        if label.startswith("lo:") and stale(label[3:]):
            ip("addr", "del", f"{info['local']}/{info['prefixlen']}", "dev", "lo", check=False)
            removed.append(f"address {info['local']} on lo")
    return removed


def _lo_infos() -> Iterable[dict[str, object]]:
    for link in _addresses():
        if link.get("ifname") == "lo":
            yield from link.get("addr_info", [])  # type: ignore[misc]
