"""A fleet of grading workers on Celery, with Redis as broker and result
backend (``pip install winsandbox[celery]``).

A worker (Windows or Linux; Celery's ``threads`` pool, since prefork does not
run on Windows)::

    WINSANDBOX_BROKER_URL=redis://queue-host:6379/0 celery -A winsandbox.celery worker -P threads -c 8

A client::

    from winsandbox.celery import run_many
    for outcome in run_many(jobs, limits=Limits(cpu_time=1, memory="256MiB")):
        ...

The task is acknowledged late: a worker that dies with a job leaves it
unacknowledged, and Redis hands it to another worker once the visibility
timeout passes, so every job gets exactly one outcome. Nothing the dead
worker ran goes on running (Windows: its jobs are killed when it closes;
Linux: its programs get SIGKILL when it dies, and any other winsandbox
process on the machine, at its next run, kills what they left in their
cgroups).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Optional, Union

try:
    from celery import Celery
    from celery.exceptions import TimeoutError as _CeleryTimeout
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError("winsandbox.celery needs Celery and redis: pip install 'winsandbox[celery]'") from e

from ._limits import Limits, _limits_arg
from ._outcome import Outcome, Worker
from ._run import Job, _failed, _run_job
from ._winsandbox import backend_name

TASK_NAME = "winsandbox.run"
"""The name of the task `register` adds."""

BROKER_ENV = "WINSANDBOX_BROKER_URL"
RESULT_ENV = "WINSANDBOX_RESULT_BACKEND"
VISIBILITY_ENV = "WINSANDBOX_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT = 600.0
"""Seconds a job may stay unacknowledged before Redis gives it to another
worker: longer than any job waits in a worker plus its wall limit."""


def _judge(job: Any, limits: Any = None) -> dict[str, Any]:
    """The task: runs one job and gives back its outcome as a dict. A job
    that cannot run gives verdict SE with ``error`` saying why."""
    lim: Optional[Limits] = None
    try:
        spec = Job.from_dict(job)
        lim = spec.limits or (None if limits is None else Limits.from_dict(limits))
    except (TypeError, ValueError) as e:
        args = job.get("args") if isinstance(job, dict) else None
        argv = [str(a) for a in args] if isinstance(args, list) and args else ["?"]
        o = _failed(argv, False, f"{type(e).__name__}: {e}")
    else:
        o = _run_job(spec, lim, text=False)
    here = Worker(
        hostname=socket.gethostname(),
        platform=sys.platform,
        backend=backend_name(),
        limits=lim or Limits(),
    )
    return dataclasses.replace(o, worker=here).to_dict()


def register(app: Any) -> Any:
    """Adds the ``winsandbox.run`` task to ``app`` (a `celery.Celery`), once,
    and returns it. It is acknowledged late and sent again when its worker is
    lost; for a fleet, also give the app JSON serialisation,
    ``worker_prefetch_multiplier=1`` and a Redis ``visibility_timeout``
    longer than any job (as `configure` does)."""
    if TASK_NAME in app.tasks:
        return app.tasks[TASK_NAME]
    return app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)(_judge)


def configure(app: Any, *, visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT) -> None:
    """The settings a grading fleet wants on ``app``: JSON only, one job
    fetched at a time per worker thread, late acknowledgement, and the
    visibility timeout after which a dead worker's job is delivered again."""
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # kombu sweeps for jobs past their visibility timeout every
        # interval x throttle seconds (by default 10 x 10): a dead worker's
        # job would wait 100 s more. One cheap Redis scan per interval instead.
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": max(1.0, min(10.0, visibility_timeout / 4)),
            "unacked_restore_throttle": 1,
            # A worker killed during a sweep holds its lock until this expires
            # (by default 300 s, during which no job is delivered again).
            "unacked_mutex_expire": 10,
        },
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )


def _default_app() -> Any:
    url = os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0")
    a = Celery("winsandbox", broker=url, backend=os.environ.get(RESULT_ENV, url))
    vt = os.environ.get(VISIBILITY_ENV)
    try:
        visibility = float(vt) if vt else DEFAULT_VISIBILITY_TIMEOUT
    except ValueError:
        raise ValueError(f"{VISIBILITY_ENV}: expected seconds, got {vt!r}") from None
    configure(a, visibility_timeout=visibility)
    register(a)
    return a


app = _default_app()
"""A Celery app from the environment: broker ``WINSANDBOX_BROKER_URL``
(default ``redis://127.0.0.1:6379/0``), results ``WINSANDBOX_RESULT_BACKEND``
(default: the broker), ``WINSANDBOX_VISIBILITY_TIMEOUT`` seconds."""


_CHECK_EVERY = 2.0
"""Seconds between looks at the broker for a job whose outcome is late."""


def _result(a: Any, r: Any, deadline: Optional[float], resend: Any) -> Any:
    """The result of ``r`` by ``deadline``. Kombu's Redis transport takes a
    message off its queue (BRPOP) before it records it as unacknowledged: a
    worker killed between the two loses the job, whatever ``acks_late``
    says. So a job whose outcome is late and whose message the broker holds
    nowhere (seen twice, ``_CHECK_EVERY`` apart) is sent again (judging is
    idempotent), at most 3 times. The result is forgotten once read."""
    missing = resent = 0
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _CeleryTimeout()
            try:
                return r.get(timeout=_CHECK_EVERY if left is None else max(0.001, min(_CHECK_EVERY, left)))
            except _CeleryTimeout:
                if left is not None and left <= _CHECK_EVERY:
                    raise
            held = _in_broker(a, r.id)
            missing = missing + 1 if held is False and r.state == "PENDING" else 0
            if missing >= 2 and resent < 3:
                with contextlib.suppress(Exception):
                    r.forget()
                r, missing, resent = resend(), 0, resent + 1
    finally:
        with contextlib.suppress(Exception):  # the result expires anyway
            r.forget()


def _in_broker(a: Any, task_id: str) -> Optional[bool]:
    """Whether kombu's Redis transport still holds the job's message (queued,
    or taken and not yet acknowledged); None when that cannot be told."""
    try:
        needle = task_id.encode()
        with a.connection_for_read() as conn:
            ch = conn.default_channel
            client = ch.client
            queue = a.conf.task_default_queue or "celery"
            if any(needle in m for m in client.lrange(queue, 0, -1)):
                return True
            return any(needle in m for m in client.hvals(ch.unacked_key))
    except Exception:
        return None


def run_many(
    jobs: Iterable[Union[Job, Sequence[str]]],
    *,
    limits: Optional[Limits] = None,
    app: Any = None,
    timeout: Optional[float] = None,
) -> Iterator[Outcome[bytes]]:
    """`winsandbox.run_many` on the fleet: sends every job to the workers of
    ``app`` (default: this module's `app`), and yields their outcomes in
    submission order. A job that cannot be sent or that no worker answered
    within ``timeout`` seconds of this call yields verdict ``SE`` with
    ``error`` set: one failure never stops the batch. A job the broker lost
    (its worker killed as it took it) is sent again. ``limits`` applies to
    jobs without their own. Stopping early revokes the jobs not yet started."""
    _limits_arg("limits", limits)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
    a = app if app is not None else globals()["app"]
    register(a)
    lim = None if limits is None else limits.to_dict()
    deadline = None if timeout is None else time.monotonic() + timeout
    sent: deque[tuple[Sequence[Any], Any, Optional[str], dict[str, Any]]] = deque()
    for job in jobs:
        spec = job if isinstance(job, Job) else Job(args=job)
        d = spec.to_dict()
        try:
            sent.append((spec.args, a.send_task(TASK_NAME, args=(d, lim)), None, d))
        except Exception as e:
            sent.append((spec.args, None, f"{type(e).__name__}: {e}", d))
    try:
        while sent:
            args, r, error, d = sent[0]
            if r is None:
                sent.popleft()
                yield _failed(args, False, error or "not sent")
                continue
            try:
                o: Outcome[bytes] = Outcome.from_dict(
                    _result(a, r, deadline, lambda d=d: a.send_task(TASK_NAME, args=(d, lim)))
                )
            except _CeleryTimeout:
                o = _failed(args, False, f"no worker gave an outcome within {timeout} s")
            except Exception as e:
                o = _failed(args, False, f"{type(e).__name__}: {e}")
            sent.popleft()
            yield o
    finally:
        left = [r.id for _, r, _, _ in sent if r is not None]
        if left:
            with contextlib.suppress(Exception):  # best effort: the broker may be gone
                a.control.revoke(left)
