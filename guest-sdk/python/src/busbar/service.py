"""The base classes a Python service subclasses, and :func:`serve`, which turns one into the
component's exports.

componentize-py makes a new ``WitWorld`` object for every export call, so the running service
is kept here, at module level, from ``start`` to ``stop``. Module-level code of the service's
file runs once, while the component is built: import what you need there (a module imported
first inside a handler at run time is not in the component).
"""

import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import wit_world
from componentize_py_types import Err
from wit_world.imports import bus, config, log, timers, types

from .mqtt import TopicsMixin, topic
from .message import (
    BusError,
    DeliveryFailure,
    ErrorCode,
    Message,
    Reply,
    State,
    decode,
    encode,
    header_list,
    raising,
)

TIMER_ACTION = "$timer"
ERROR_ACTION = "$error"
TOPIC_ACTION = "$topic"

def action(name: str) -> Callable:
    """Marks a method as the handler of action ``name``: it gets the :class:`Message` and
    returns the reply (a dict, list, number, str, bytes, :class:`Reply`, or None for none).
    Raise :class:`BusError` to answer with an error code."""

    def mark(f):
        f._busbar_action = name
        return f

    return mark


def timer(name: str) -> Callable:
    """Marks a method as what runs when timer ``name`` fires (set it with
    :meth:`BaseService.set_interval` or :meth:`BaseService.set_timeout`)."""

    def mark(f):
        f._busbar_timer = name
        return f

    return mark


class BaseService(TopicsMixin):
    """A busbar service. Override what you need: :meth:`start`, :meth:`stop`,
    :meth:`state_update`, :meth:`on_timer`, :meth:`on_error`, :meth:`on_topic`,
    :meth:`process`, and mark action handlers with ``@action("name")``, timer handlers with
    ``@timer("name")`` and MQTT topic handlers with ``@topic("filter")``."""

    def __init__(self):
        self.name: str = config.service_name()
        #: The latest desired state (see :meth:`state_update`).
        self.desired: State = State()
        # From the base classes down, so a subclass's marks win; each mark names a method,
        # looked up on the instance, so overriding a marked method keeps its action.
        actions: Dict[str, str] = {}
        timers_: Dict[str, str] = {}
        topics_: Dict[Tuple[str, Optional[str]], List[str]] = {}
        for klass in reversed(type(self).__mro__):
            for attr, f in vars(klass).items():
                if hasattr(f, "_busbar_action"):
                    actions[f._busbar_action] = attr
                if hasattr(f, "_busbar_timer"):
                    timers_[f._busbar_timer] = attr
                for mark in getattr(f, "_busbar_topics", ()):
                    if attr not in topics_.setdefault(mark, []):
                        topics_[mark].append(attr)
        self._actions: Dict[str, Callable] = {a: getattr(self, m) for a, m in actions.items()}
        self._timers: Dict[str, Callable] = {t: getattr(self, m) for t, m in timers_.items()}
        # (filter, broker, handler), in the order the marks were made, base classes first.
        self._topics: List[Tuple[str, Optional[str], Callable]] = [
            (f, b, getattr(self, m)) for (f, b), names in topics_.items() for m in names
        ]

    # What the node calls; override these.

    def start(self) -> None:
        """Called once before any message. Raise to fail the start (the node retries with
        backoff and says why)."""

    def stop(self) -> None:
        """Called once before the instance is dropped."""

    def state_update(self, state: State) -> None:
        """The node's desired state changed (also called right after ``start`` when there is
        one). ``self.desired`` already holds it."""

    def on_timer(self, name: str) -> None:
        """Timer ``name`` fired: runs the method marked ``@timer(name)``, if any."""
        handler = self._timers.get(name)
        if handler is not None:
            handler()
        else:
            self.warn(f"timer `{name}` fired, but no method is marked @timer({name!r})")

    def on_error(self, failure: DeliveryFailure) -> None:
        """A message this service sent failed; the default logs a warning."""
        self.warn(
            f"message {failure.message_id} (action `{failure.action}` to "
            f"`{failure.destination}`) failed: {failure.code}: {failure.message}"
        )

    def on_topic(self, msg: Message) -> None:
        """A publish on a subscribed MQTT topic that no method marked ``@topic`` matches
        (``msg.topic``, ``msg.broker``, ``msg.retained``; the payload as published). The
        default logs a warning."""
        self.warn(
            f"a publish on `{msg.topic}` (broker `{msg.broker}`) arrived, but no method "
            f"marked @topic matches it (override on_topic to take it)"
        )

    def process(self, msg: Message) -> Any:
        """Handles one message: by default, the method marked ``@action(msg.action)``;
        `unknown-action` when there is none."""
        handler = self._actions.get(msg.action)
        if handler is None:
            raise BusError(
                ErrorCode.UNKNOWN_ACTION,
                f"service `{self.name}` does not handle action `{msg.action}`",
            )
        return handler(msg)

    # What the service can do.

    def property(self, name: str, default: Any = None) -> Any:
        """Configuration property ``name`` from the manifest, or ``default`` when it is not
        set. Without a default: the text the node gives (strings as they are, other values
        as JSON text). With one: converted to the default's type (str, bool, int, float,
        list or dict); a value that does not convert is logged and the default used."""
        raw = config.get_property(name)
        if raw is None:
            return default
        if default is None or isinstance(default, str):
            return raw
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        kind = type(default)
        if kind is float and type(value) is int:
            return float(value)
        if type(value) is kind:
            return value
        self.warn(f"property `{name}`: {raw!r} is not a {kind.__name__}, using the default")
        return default

    def debug(self, text: str) -> None:
        """A debug line (forwarded to the hub while debug is on)."""
        log.debug(str(text))

    def info(self, text: str) -> None:
        log.log(log.Level.INFO, str(text))

    def warn(self, text: str) -> None:
        log.log(log.Level.WARN, str(text))

    def error(self, text: str) -> None:
        log.log(log.Level.ERROR, str(text))

    def track(self, event: str, **properties: Any) -> None:
        """A tracking event with properties (counted and logged)."""
        log.track(event, [(k, str(v)) for k, v in properties.items()])

    def throw_error(self, code: int, description: str) -> None:
        """Reports a fault without stopping: logged as an error and counted."""
        log.throw_error(int(code), str(description))

    def submit_message(self, body: Any, headers: Optional[Dict[str, str]] = None) -> str:
        """Sends ``body`` towards the IoT hub (dicts and lists as JSON); returns its id once
        the node's Com has it."""
        content_type, payload = encode(body)
        return raising(bus.submit_message, content_type, payload, header_list(headers))

    def submit_action(self, destination: str, action: str, body: Any = None) -> str:
        """Sends ``action`` to service ``destination`` without waiting; returns its id. A
        failure at the receiver comes back later through :meth:`on_error`."""
        content_type, payload = encode(body)
        return raising(bus.submit_action, destination, action, content_type, payload)

    def call(self, destination: str, action: str, body: Any = None, timeout_ms: int = 1000) -> Any:
        """Sends ``action`` to ``destination`` and waits for its reply, decoded (JSON as Python
        values, text as str, else bytes). Raises :class:`BusError` on failure."""
        content_type, payload = encode(body)
        reply = raising(bus.call, destination, action, content_type, payload, int(timeout_ms))
        return decode(reply.content_type, reply.payload)

    def set_interval(self, name: str, period_ms: int) -> None:
        """Fires timer ``name`` every ``period_ms`` (at least 10)."""
        raising(timers.set_interval, name, int(period_ms))

    def set_timeout(self, name: str, delay_ms: int) -> None:
        """Fires timer ``name`` once after ``delay_ms``."""
        raising(timers.set_timeout, name, int(delay_ms))

    def cancel_timer(self, name: str) -> None:
        timers.cancel(name)

class StatefulService(BaseService):
    """A service whose ``self.state`` (any JSON value; a dict to start with) is handed to its
    next version when the node hot-swaps it. Override :meth:`snapshot` and :meth:`restore` to
    keep something else."""

    def __init__(self):
        super().__init__()
        self.state: Any = {}

    def snapshot(self) -> bytes:
        """The state to hand over: ``self.state`` as JSON."""
        return json.dumps(self.state, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        """Takes over what the previous version's :meth:`snapshot` returned, after
        ``__init__`` and before :meth:`start`. Raise to fail this version's start (the node
        then rolls back). Nothing handed over (empty): ``self.state`` stays as it is."""
        if data:
            self.state = json.loads(data)


class _Running:
    """The service instance between ``start`` and ``stop``."""

    service: Optional[BaseService] = None
    restored: Optional[bytes] = None


def _fault(what: str) -> str:
    """Logs the exception being handled with its traceback; returns its one-line form. The
    finished frames' locals are released first, so a `MemoryError` can still be told."""
    error = sys.exc_info()[1]
    try:
        traceback.clear_frames(error.__traceback__)
        text = traceback.format_exc()
    except BaseException:
        text = f"{type(error).__name__}: {error}"
    try:
        log.log(log.Level.ERROR, f"{what}: {text}")
    except BaseException:
        pass
    return text.strip().splitlines()[-1]


def _crash(what: str):
    """Logs the exception being handled, then ends the instance (the node sees it exit and
    restarts the service with backoff)."""
    _fault(what)
    os._exit(1)


def _reply(value: Any) -> Optional[types.Reply]:
    if value is None:
        return None
    content_type, payload = encode(value)
    return types.Reply(content_type, payload)


def serve(cls: type) -> type:
    """The ``WitWorld`` class componentize-py exports, running ``cls`` (a subclass of
    :class:`BaseService`): write ``WitWorld = serve(MyService)`` in the service's file.

    An exception escaping a handler (other than :class:`BusError`, which answers the sender)
    is logged with its Python traceback and ends the instance: the node restarts the service
    with backoff, as for any fault. An exception in ``start`` fails the start."""
    if not (isinstance(cls, type) and issubclass(cls, BaseService)):
        raise TypeError("serve() takes a subclass of busbar.BaseService")

    class WitWorld(wit_world.WitWorld):
        def start(self) -> None:
            try:
                service = cls()
                if _Running.restored is not None and isinstance(service, StatefulService):
                    data, _Running.restored = _Running.restored, None
                    service.restore(data)
                service._subscribe_marked()
                service.start()
            except BaseException:
                raise Err(f"{cls.__name__}.start: {_fault('start failed')}")
            _Running.service = service

        def stop(self) -> None:
            service, _Running.service = _Running.service, None
            if service is not None:
                try:
                    service.stop()
                except BaseException:
                    _fault("stop failed")

        def process(self, message: types.Message) -> Optional[types.Reply]:
            service = _Running.service
            if service is None:
                raise Err(types.Error(ErrorCode.UNAVAILABLE, "the service is not running"))
            msg = Message(message)
            try:
                if msg.action == TIMER_ACTION:
                    service.on_timer(msg.text())
                    return None
                if msg.action == ERROR_ACTION:
                    try:
                        failure = DeliveryFailure(**msg.json())
                    except (BusError, TypeError) as e:
                        service.warn(f"ignoring malformed `$error` message {msg.id}: {e}")
                        return None
                    service.on_error(failure)
                    return None
                if msg.action == TOPIC_ACTION:
                    service._topic_arrived(msg)
                    return None
                return _reply(service.process(msg))
            except BusError as e:
                raise e.to_wit()
            except BaseException:
                _crash(f"action `{msg.action}` from `{msg.source}` raised")

        def state_update(self, state: str) -> None:
            service = _Running.service
            if service is None:
                return
            try:
                parsed = State.parse(state)
            except ValueError as e:
                service.warn(f"ignoring malformed state update: {e}")
                return
            service.desired = parsed
            try:
                service.state_update(parsed)
            except BaseException:
                _crash("state_update raised")

        def snapshot(self) -> bytes:
            service = _Running.service
            if not isinstance(service, StatefulService):
                return b""
            try:
                return bytes(service.snapshot())
            except BaseException:
                _crash("snapshot raised")

        def restore(self, state: bytes) -> None:
            _Running.restored = bytes(state)

    WitWorld.__name__ = WitWorld.__qualname__ = "WitWorld"
    return WitWorld
