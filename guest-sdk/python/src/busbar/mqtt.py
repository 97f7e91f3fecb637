"""MQTT topics for services: the ``@topic`` decorator, MQTT filter matching, and the
publish/subscribe methods :class:`busbar.BaseService` has (from :class:`TopicsMixin`)."""

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from wit_world.imports import topics

from .message import BusError, Message, encode, raising

_QOS = {0: topics.Qos.AT_MOST_ONCE, 1: topics.Qos.AT_LEAST_ONCE}


def topic(filter: str, broker: Optional[str] = None) -> Callable:
    """Marks a method as the handler of publishes on MQTT topic filter ``filter`` (``+`` for
    one level, ``#`` for any below; a leading ``/`` makes it absolute, else it is relative to
    the service's base topic ``{base_topic}/{service}``) on connection ``broker`` (None: the
    default one). It gets the :class:`Message` (``msg.topic``, ``msg.body()``, ...); what it
    returns is ignored. Marks stack: one method may take several filters.

    The SDK subscribes to every marked filter when the service starts, before its
    :meth:`BaseService.start` runs (a failed subscription fails the start); publishes reach
    handlers only after ``start`` returns. A publish goes to every marked method whose filter
    matches its topic (once per method), preferring those whose ``broker`` names its
    connection over those with None (which take any connection's: the SDK does not know the
    default's name); one that none matches (e.g. from :meth:`BaseService.subscribe`) goes to
    :meth:`BaseService.on_topic`. The SDK cannot see the base topic, so a relative filter
    matches the levels after a level that is the service's name: ``requests/+`` matches
    ``{anything}/{service}/requests/x``."""

    def mark(f):
        f._busbar_topics = getattr(f, "_busbar_topics", ()) + ((filter, broker),)
        return f

    return mark


def _levels_match(pattern: List[str], levels: List[str]) -> bool:
    """MQTT matching of a filter's levels against a topic's."""
    for i, want in enumerate(pattern):
        if want == "#":
            return True  # its parent level and any below
        if i >= len(levels) or (want != "+" and want != levels[i]):
            return False
    return len(pattern) == len(levels)


def topic_matches(filter: str, topic_: str, service: str) -> bool:
    """Whether a publish on ``topic_`` (absolute, as its ``topic`` header says) matches
    ``filter`` as service ``service`` gave it to ``subscribe``: an absolute filter (leading
    ``/``) against the whole topic, a relative one against the levels after a level named
    ``service`` (the last level of the service's base topic, which the SDK cannot see). A
    ``$share/{group}/`` prefix is left out, as the broker does."""
    if filter.startswith("$share/"):
        group, _, rest = filter[len("$share/"):].partition("/")
        if group and rest:
            filter = rest
    levels = topic_.split("/")
    if filter.startswith("/"):
        pattern = filter[1:].split("/")
        # A wildcard first level never matches a `$` topic (`$SYS/...`).
        if topic_.startswith("$") and pattern[0] in ("+", "#"):
            return False
        return _levels_match(pattern, levels)
    pattern = filter.split("/")
    return any(
        level == service and _levels_match(pattern, levels[i + 1:])
        for i, level in enumerate(levels)
    )


class TopicsMixin:
    """The MQTT methods of :class:`busbar.BaseService` (which gives ``self._topics``,
    ``self.name`` and ``self.on_topic``)."""

    def publish(
        self,
        topic: str,
        body: Any,
        *,
        broker: Optional[str] = None,
        qos: int = 1,
        retain: bool = False,
        properties: Union[Dict[str, str], Iterable[Tuple[str, str]], None] = None,
    ) -> None:
        """Publishes ``body`` to MQTT ``topic`` (a leading ``/`` makes it absolute, else it is
        relative to ``{base_topic}/{service}``) on connection ``broker`` (None: the default
        one). The body is encoded as for :meth:`submit_message` (bytes as they are, str as
        text, a :class:`Reply` as it says, anything else as JSON) and its content type sent as
        the MQTT 5 content type; ``properties`` (a dict or (name, value) pairs) are MQTT 5
        user properties. ``qos=1`` returns once the publish is in the connection's durable
        outbox, connected or not; ``qos=0`` sends it once and raises :class:`BusError`
        (`unavailable`) while the broker is disconnected. The topic must lie within the
        service's ``grants.topics``."""
        if qos not in _QOS:
            raise ValueError(f"publish to `{topic}`: qos must be 0 or 1, not {qos!r}")
        content_type, payload = encode(body)
        pairs = properties.items() if isinstance(properties, dict) else properties or ()
        options = topics.PublishOptions(
            qos=_QOS[qos],
            retain=bool(retain),
            content_type=content_type,
            properties=[(str(k), str(v)) for k, v in pairs],
        )
        raising(topics.publish, broker, topic, payload, options)

    def subscribe(self, filter: str, broker: Optional[str] = None) -> None:
        """Subscribes to MQTT topic filter ``filter`` (``+``, ``#``; ``$share/{group}/...``
        for a shared subscription; relative or absolute as for :meth:`publish`) on
        connection ``broker``. Publishes on it go to the method marked ``@topic`` with a
        matching filter, else to :meth:`on_topic`. A subscription belongs to the service: it
        holds across restarts and hot swaps, until :meth:`unsubscribe` or the service
        stops."""
        raising(topics.subscribe, broker, filter)

    def unsubscribe(self, filter: str, broker: Optional[str] = None) -> None:
        """Ends the subscription to ``filter`` (as given to :meth:`subscribe`) on connection
        ``broker``; nothing happens if there is none. A filter marked ``@topic`` is subscribed
        to again at the next start."""
        raising(topics.unsubscribe, broker, filter)

    def _subscribe_marked(self) -> None:
        """Subscribes to the filters marked ``@topic`` (each pair once)."""
        for filter_, broker in dict.fromkeys((f, b) for f, b, _ in self._topics):
            try:
                self.subscribe(filter_, broker)
            except BusError as e:
                on = f" on broker `{broker}`" if broker is not None else ""
                raise BusError(e.code, f"@topic({filter_!r}){on}: {e.message}") from None

    def _topic_arrived(self, msg: Message) -> None:
        """Runs the handlers of a ``$topic`` message (see :func:`topic`), or :meth:`on_topic`."""
        topic_ = msg.topic or ""
        matching = [
            (b, h) for f, b, h in self._topics
            if b in (None, msg.broker) and topic_matches(f, topic_, self.name)
        ]
        # Handlers naming the publish's broker win over those with None; a method runs once
        # however many of its filters match.
        named = [h for b, h in matching if b is not None]
        handlers = list(dict.fromkeys(named or [h for _, h in matching]))
        if not handlers:
            self.on_topic(msg)
        for handler in handlers:
            handler(msg)
