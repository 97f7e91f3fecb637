"""Messages, replies, errors and the desired state, as a Python service sees them."""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import types

#: The WIT error codes, e.g. ``ErrorCode.UNKNOWN_ACTION``.
ErrorCode = types.ErrorCode

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BYTES = "application/octet-stream"


def is_json(content_type: str) -> bool:
    """Whether a media type is JSON (``application/json`` or ``...+json``), as the node
    decides it."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence == JSON or essence.endswith("+json")


def encode(body: Any) -> Tuple[str, bytes]:
    """A body as (content type, payload): bytes as they are, str as UTF-8 text, a
    :class:`Reply` as it says, anything else as JSON."""
    if isinstance(body, Reply):
        return body.content_type, body.payload
    if isinstance(body, (bytes, bytearray, memoryview)):
        return BYTES, bytes(body)
    if isinstance(body, str):
        return TEXT, body.encode()
    return JSON, json.dumps(body, separators=(",", ":")).encode()


def decode(content_type: str, payload: bytes) -> Any:
    """A payload as Python: JSON decoded, ``text/*`` as str, anything else as bytes."""
    if is_json(content_type):
        return json.loads(payload) if payload else None
    if content_type.lower().startswith("text/"):
        return payload.decode("utf-8", "replace")
    return payload


class BusError(Exception):
    """An error with a WIT error code: raised by the bus calls when they fail, and raised by a
    handler to answer its sender with that code."""

    def __init__(self, code: "ErrorCode", message: str):
        super().__init__(f"{code.name.lower().replace('_', '-')}: {message}")
        self.code = code
        self.message = message

    @staticmethod
    def bad_payload(message: str) -> "BusError":
        return BusError(ErrorCode.BAD_PAYLOAD, message)

    @staticmethod
    def other(message: str) -> "BusError":
        return BusError(ErrorCode.OTHER, message)

    def to_wit(self) -> Err:
        return Err(types.Error(self.code, self.message))


def raising(f, *args):
    """Calls a bus import, turning its `Err` into a :class:`BusError`."""
    try:
        return f(*args)
    except Err as e:
        raise BusError(e.value.code, e.value.message) from None


class Message:
    """One message addressed to this service."""

    __slots__ = ("_raw",)

    def __init__(self, raw: "types.Message"):
        self._raw = raw

    id = property(lambda self: self._raw.id, doc="The id the node gave it.")
    source = property(lambda self: self._raw.source, doc="Who sent it.")
    destination = property(lambda self: self._raw.destination)
    action = property(lambda self: self._raw.action, doc="What to do.")
    content_type = property(lambda self: self._raw.content_type)
    payload = property(lambda self: self._raw.payload, doc="The body, as bytes.")
    correlation_id = property(lambda self: self._raw.correlation_id)

    @property
    def headers(self) -> Dict[str, str]:
        return dict(self._raw.headers)

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first header ``name``, or ``default``. Unlike :attr:`headers` (where the last
        one wins), a publish's MQTT 5 user properties, which follow the node's own headers,
        cannot hide ``topic``, ``broker`` or ``retain``."""
        for key, value in self._raw.headers:
            if key == name:
                return value
        return default

    # A publish on a subscribed MQTT topic (action ``$topic``); None (False) for any other.

    @property
    def topic(self) -> Optional[str]:
        """The topic it was published to, absolute (as the broker has it)."""
        return self.header("topic")

    @property
    def broker(self) -> Optional[str]:
        """The broker connection it came through (its name in the node config)."""
        return self.header("broker")

    @property
    def retained(self) -> bool:
        """Whether the broker kept it as the topic's last value (what a new subscription gets
        first) rather than passing on a fresh publish."""
        return self.header("retain") == "true"

    @property
    def response_topic(self) -> Optional[str]:
        """The MQTT 5 response topic the publisher asks answers on, absolute (publish there
        with ``"/" + msg.response_topic``)."""
        return self.header("response-topic")

    def text(self) -> str:
        """The body as UTF-8 text; `bad-payload` when it is not."""
        try:
            return self._raw.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BusError.bad_payload(f"action `{self.action}`: the body is not UTF-8: {e}")

    def json(self) -> Any:
        """The body as JSON; `bad-payload` (naming the action) when it is not."""
        try:
            return json.loads(self._raw.payload)
        except ValueError as e:
            raise BusError.bad_payload(f"action `{self.action}`: the body is not JSON: {e}")

    def body(self) -> Any:
        """The body decoded by its content type (JSON, text or bytes)."""
        return decode(self._raw.content_type, self._raw.payload)

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, source={self.source!r}, action={self.action!r})"


@dataclass
class Reply:
    """A reply with an explicit content type; a handler may also return a dict, list, number,
    str or bytes."""

    content_type: str
    payload: bytes


@dataclass
class DeliveryFailure:
    """Why a message this service sent failed (the payload of an ``$error`` message)."""

    message_id: str
    destination: str
    action: str
    code: str
    message: str


@dataclass
class State:
    """The node's desired state: the hub's desired properties, whose ``msb-state`` holds
    ``enabled`` (default true) and ``debug`` (default false)."""

    enabled: bool = True
    debug: bool = False
    raw: Dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def parse(text: str) -> "State":
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("the desired state is not a JSON object")
        msb = raw.get("msb-state")
        msb = msb if isinstance(msb, dict) else {}
        enabled = msb.get("enabled")
        debug = msb.get("debug")
        return State(
            enabled=enabled if isinstance(enabled, bool) else True,
            debug=debug if isinstance(debug, bool) else False,
            raw=raw,
        )


def header_list(headers: Optional[Dict[str, str]]) -> List[Tuple[str, str]]:
    return [(str(k), str(v)) for k, v in (headers or {}).items()]
