"""Start a system under test: the fakes and the implementation's components.

The :class:`Harness` owns every process it starts and stops them all in
:meth:`Harness.stop_all`, which the session fixture calls in a finalizer (and
``processes`` stops any survivor at interpreter exit).
"""

from __future__ import annotations

import itertools
import os
import secrets
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .fakes import FakeControl
from .knobs import GATEWAY_KNOBS, SERVICE_KNOBS, effective_knobs, not_configurable, require
from .plug import Component, Plug, render
from .processes import LOOPBACK, ManagedProcess, free_port, run_command

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class User:
    username: str
    password: str


@dataclass
class Running:
    """A started component: where it listens and its process."""

    name: str
    url: str
    port: int
    process: ManagedProcess
    #: The knobs whose value in this process is known (honoured or fixed; harness/knobs.py).
    knobs: Mapping[str, str]
    component: Component
    #: Where its Prometheus metrics are scraped (the plug's ``metrics``); None: not served.
    metrics_url: str | None = None

    @property
    def log(self) -> Path:
        return self.process.log

    def knob(self, name: str) -> str:
        """The value of knob ``name`` in this process; "not configurable" when unknown."""
        if name not in self.knobs:
            not_configurable(self.component, [name])
        return self.knobs[name]

    def require(self, **wanted: str) -> None:
        """Stop the test as "not configurable" unless these knobs have these values here."""
        off = [name for name, value in wanted.items() if self.knobs.get(name) != value]
        if off:
            not_configurable(self.component, off)


@dataclass
class Fake:
    """A started fake and its control handle."""

    name: str
    url: str
    process: ManagedProcess
    control: FakeControl


class Harness:
    """Starts components from a plug file, and the fakes, as real processes on loopback."""

    def __init__(self, plug: Plug, run_dir: Path, secret: str) -> None:
        self.plug = plug
        self.run_dir = run_dir
        self.secret = secret
        self.llm_api_key = f"sk-fake-{secrets.token_hex(8)}"
        self._counter = itertools.count(1)
        self._processes: list[ManagedProcess] = []
        self._fakes: list[Fake] = []

    # -- fakes -------------------------------------------------------------------------------
    def start_fake_llm(self) -> Fake:
        return self._start_fake("fake-llm", "fakes.llm", [])

    def start_fake_service(
        self,
        *,
        keep_alive: float = 5.0,
        secret: str | None = None,
        check_secret: bool = True,
        port: int | None = None,
    ) -> Fake:
        """A fake service; ``port`` fixes where it listens (to come up where a gateway points).

        ``check_secret=False`` starts it without ``--secret``: it then accepts any
        request, as it must for a gateway that signs instead (SEC-7).
        """
        args = ["--keep-alive", str(keep_alive)]
        if check_secret:
            args.append(f"--secret={secret or self.secret}")
        return self._start_fake("fake-service", "fakes.service", args, port=port)

    def _start_fake(
        self, name: str, module: str, args: list[str], *, port: int | None = None
    ) -> Fake:
        port = port or free_port()
        argv = [sys.executable, "-m", module, "--host", LOOPBACK, "--port", str(port), *args]
        process = self._spawn(name, argv, cwd=REPO, env={})
        url = f"http://{LOOPBACK}:{port}"
        process.wait_ready(f"{url}/_control/requests")
        fake = Fake(name, url, process, FakeControl(url))
        self._fakes.append(fake)
        return fake

    # -- the implementation --------------------------------------------------------------------
    def service_process(
        self, llm_url: str, *, secret: str | None = None, **knobs: str
    ) -> tuple[ManagedProcess, str, dict[str, str]]:
        """Spawn the implementation's service without waiting for it (see start_service).

        Knobs a test asks for must be ones the service honours ("not configurable").
        """
        require(self.plug.service, knobs)
        values = {**SERVICE_KNOBS, **knobs}
        values.update(
            secret=self.secret if secret is None else secret,
            llm_url=llm_url,
            llm_api_key=self.llm_api_key,
        )
        process, url = self._spawn_component(self.plug.service, values)
        return process, url, values

    def start_service(self, llm_url: str, *, secret: str | None = None, **knobs: str) -> Running:
        process, url, values = self.service_process(llm_url, secret=secret, **knobs)
        process.wait_ready(url + self.plug.service.ready)
        known = effective_knobs(self.plug.service, {k: values[k] for k in SERVICE_KNOBS})
        service = self.plug.service
        metrics = _metrics_url(service, values)
        return Running("service", url, int(values["port"]), process, known, service, metrics)

    def start_gateway(
        self,
        service_url: str,
        users: Sequence[User],
        *,
        component: Component | None = None,
        adapt: Collection[str] = (),
        **knobs: str,
    ) -> Running:
        """Start the gateway (or another way to run it: a baseline's component).

        Knobs a test asks for must be ones the gateway honours ("not configurable"),
        except that a knob in ``adapt`` may keep its fixed value: the test reads
        ``Running.knob(name)`` and adapts to it.
        """
        component = component or self.plug.gateway
        require(component, knobs, adapt)
        values = {**GATEWAY_KNOBS, **knobs}
        values.update(secret=self.secret, service_url=service_url)
        process, url = self._spawn_component(component, values, users=users)
        process.wait_ready(url + component.ready)
        known = effective_knobs(component, {k: values[k] for k in GATEWAY_KNOBS})
        metrics = _metrics_url(component, values)
        return Running(component.name, url, int(values["port"]), process, known, component, metrics)

    def _spawn_component(
        self, component: Component, values: dict[str, str], users: Sequence[User] = ()
    ) -> tuple[ManagedProcess, str]:
        n = next(self._counter)
        state_dir = self.run_dir / f"{component.name}-{n}"
        state_dir.mkdir(parents=True, exist_ok=True)
        values.update(
            python=sys.executable,
            port=str(free_port()),
            metrics_port=str(free_port()),
            state_dir=str(state_dir),
        )
        where = f"{self.plug.path.name} [{component.name}]"
        env = {k: render(v, values, where=f"{where}.env.{k}") for k, v in component.env.items()}
        full_env = {**os.environ, **env}
        log = self.run_dir / f"{component.name}-{n}.log"
        for command in component.setup:
            argv = [render(a, values, where=f"{where}.setup") for a in command]
            run_command(argv, cwd=component.workdir, env=full_env, log=log)
        if users and component.create_user:
            for user in users:
                per_user = {**values, "username": user.username, "password": user.password}
                argv = [
                    render(a, per_user, where=f"{where}.create_user") for a in component.create_user
                ]
                run_command(argv, cwd=component.workdir, env=full_env, log=log)
        argv = [render(a, values, where=f"{where}.command") for a in component.command]
        process = ManagedProcess(
            f"{component.name}-{n}", argv, cwd=component.workdir, env=full_env, log=log
        )
        self._processes.append(process.start())
        return process, f"http://{LOOPBACK}:{values['port']}"

    def _spawn(
        self, name: str, argv: list[str], *, cwd: Path, env: Mapping[str, str]
    ) -> ManagedProcess:
        log = self.run_dir / f"{name}-{next(self._counter)}.log"
        process = ManagedProcess(name, argv, cwd=cwd, env={**os.environ, **env}, log=log)
        self._processes.append(process.start())
        return process

    def stop_all(self) -> None:
        for fake in self._fakes:
            fake.control.close()
        for process in reversed(self._processes):
            process.stop()


def _metrics_url(component: Component, values: Mapping[str, str]) -> str | None:
    if component.metrics is None:
        return None
    return render(component.metrics, values, where=f"[{component.name}].metrics")
