"""Watching Jobs and Workloads from threads, in kopf's three layers (``kopf/_cogs/clients/watching.py``).

The official ``kubernetes`` client is synchronous, so each watched resource gets one daemon
thread running: reconnect forever (``_iterations`` bounds it for tests) → list, then watch from
the list's ``resourceVersion`` (relist on 410 Gone) → one watch request. Every object seen is
handed to ``emit(kind, event_type, object)``, which must be thread-safe; after each listing a
``SYNCED`` event carries the listed items and when the listing started, so the consumer can tell
deleted objects from ones created meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from services.dispatcher.backends._k8s_errors import api_error

logger = logging.getLogger(__name__)

Emit = Callable[[str, str, dict[str, Any]], None]


@dataclass
class Resource:
    """A watched resource: how to list/watch it in a thread."""

    kind: str
    call: Callable[..., Any]
    args: tuple[Any, ...]
    selector: str | None
    iterations: int | None
    not_found_hint: str | None = None
    """Logged once when the API does not serve the resource (a CRD not installed), instead of retrying loudly."""
    thread: threading.Thread | None = None
    response: Any = None
    not_found_logged: bool = field(default=False)


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


class Watcher:
    """Runs one thread per resource until :meth:`stop`."""

    def __init__(self, resources: list[Resource], emit: Emit, *, watch_timeout_s: int) -> None:
        self.resources = resources
        self._emit = emit
        self._timeout = watch_timeout_s
        self.stopping = threading.Event()

    def start(self) -> None:
        for resource in self.resources:
            resource.thread = threading.Thread(
                target=self._watch_forever, args=(resource,), name=f"kubescribe-watch-{resource.kind}", daemon=True
            )
            resource.thread.start()

    def stop(self) -> list[threading.Thread]:
        """Ask every thread to stop and cut their open watch requests; returns the threads to join."""
        self.stopping.set()
        for resource in self.resources:
            with contextlib.suppress(Exception):
                if resource.response is not None:
                    resource.response.shutdown()
        return [r.thread for r in self.resources if r.thread is not None]

    def _watch_forever(self, resource: Resource) -> None:
        """Layer 1: reconnect forever (or ``iterations`` times), backing off on errors."""
        iterations = resource.iterations
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self._list_and_watch(resource)
                delay = 0.5
            except ApiException as exc:
                if exc.status == 404 and resource.not_found_hint:
                    if not resource.not_found_logged:
                        logger.warning("%s", resource.not_found_hint)
                        resource.not_found_logged = True
                    delay = 30.0
                else:
                    logger.warning("watching %ss failed: %s", resource.kind, api_error(exc, f"watch {resource.kind}s"))
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # connection drops, timeouts, malformed streams: reconnect
                if self.stopping.is_set():
                    break
                logger.debug("watch of %ss interrupted (%s); reconnecting", resource.kind, exc)
                delay = min(delay * 2, 30.0)
            if iterations is not None:
                iterations -= 1
                if iterations <= 0:
                    break
            self.stopping.wait(delay)
        logger.debug("watch of %ss stopped", resource.kind)

    def _list_and_watch(self, resource: Resource) -> None:
        """Layer 2: list, then watch from the list's resourceVersion; relist on 410 Gone."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if resource.selector:
            kwargs["label_selector"] = resource.selector
        started = time.monotonic()
        response = resource.call(*resource.args, **kwargs)
        listing = json.loads(response.data)
        for item in listing.get("items") or []:
            self._emit(resource.kind, "LISTED", item)
        self._emit(resource.kind, "SYNCED", {"items": listing.get("items") or [], "started": started})
        version = (listing.get("metadata") or {}).get("resourceVersion")
        while not self.stopping.is_set():
            try:
                version = self._watch_once(resource, version)
            except _Gone:
                logger.debug("watch of %ss expired (410); relisting", resource.kind)
                return

    def _watch_once(self, resource: Resource, version: str | None) -> str | None:
        """Layer 3: one watch request; returns the resourceVersion to resume from."""
        timeout = self._timeout
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
            # A little longer than the server's timeout: a silent connection is dead, reconnect.
            "_request_timeout": (10, timeout + min(5, timeout)),
        }
        if resource.selector:
            kwargs["label_selector"] = resource.selector
        if version:
            kwargs["resource_version"] = version
        response = resource.call(*resource.args, **kwargs)
        resource.response = response
        try:
            for line in iter_resp_lines(response):
                if self.stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event, obj = event.get("type"), event.get("object") or {}
                if kind_of_event == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("reason"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind_of_event != "BOOKMARK":
                    self._emit(resource.kind, kind_of_event, obj)
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            if self.stopping.is_set():
                return version
            logger.debug("watch of %ss idle for %ss; resuming", resource.kind, timeout)
        finally:
            resource.response = None
            with contextlib.suppress(Exception):
                response.release_conn()
        return version
