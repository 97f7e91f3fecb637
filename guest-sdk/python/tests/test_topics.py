"""The Python SDK's MQTT topics on the host: the SDK and `guests/python/py_mqtt_echo.py` run on
CPython against componentize-py's bindings of `wit/service.wit`, with the node's imports
replaced by fakes that record the calls. Run by `tests/integration/python.rs` as

    componentize-py -d wit -w service bindings DIR
    BUSBAR_PY_BINDINGS=DIR python3 guest-sdk/python/tests/test_topics.py

It checks what a component test cannot reach cheaply: filter matching (relative, absolute,
`$` topics, shared subscriptions), routing among several `@topic` handlers, publish options
and errors."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [
    os.environ["BUSBAR_PY_BINDINGS"],
    os.path.join(HERE, "..", "src"),
    os.path.join(HERE, "..", "..", "..", "guests", "python"),
]

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import config, log, topics, types  # noqa: E402

calls = []
config.service_name = lambda: "echo"
log.log = lambda level, text: calls.append(("log", level.name, text))
topics.subscribe = lambda broker, f: calls.append(("sub", broker, f))
topics.publish = lambda broker, t, p, o: calls.append(("pub", broker, t, p, o))

from busbar import BaseService, BusError, Message, serve, topic  # noqa: E402
from busbar.mqtt import topic_matches  # noqa: E402
import busbar.service as running  # noqa: E402
import py_mqtt_echo  # noqa: E402


def message(action, headers, payload=b"x", content_type="application/json"):
    return types.Message("1", "topics", "echo", action, content_type, payload, None, headers)


# Matching, as service `echo` gave its filters.
assert topic_matches("requests/+", "busbar/n1/echo/requests/a", "echo")
assert not topic_matches("requests/+", "busbar/n1/echo/requests/a/b", "echo")
assert not topic_matches("requests/+", "busbar/n1/other/requests/a", "echo")
assert topic_matches("#", "busbar/n1/echo", "echo")
assert topic_matches("a/#", "echo/a", "echo")
assert topic_matches("/zig/+/t", "zig/x/t", "echo")
assert not topic_matches("/+/x", "$SYS/x", "echo")
assert topic_matches("/$SYS/#", "$SYS/x", "echo")
assert topic_matches("$share/g/jobs/+", "b/echo/jobs/1", "echo")
assert topic_matches("$share/g//abs/#", "abs/1/2", "echo")
assert not topic_matches("/a/b", "a/b/c", "echo")

# The example: subscribes at start, answers on replies/{id} or the response topic.
echo = py_mqtt_echo.WitWorld()
echo.start()
assert calls == [("sub", None, "requests/+")], calls
calls.clear()
headers = [("topic", "busbar/n1/echo/requests/r7"), ("broker", "main"), ("qos", "1"),
           ("retain", "false")]
assert echo.process(message("$topic", headers, b'{"a":1}')) is None
c = calls.pop()
assert c[:4] == ("pub", "main", "replies/r7", b'{"a":1}'), c
assert c[4].content_type == "application/json" and c[4].qos == topics.Qos.AT_LEAST_ONCE
echo.process(message("$topic", headers + [("response-topic", "clients/c1/inbox"),
                                          ("topic", "a user property named topic")],
                     b"hi", "text/plain"))
c = calls.pop()
assert c[:4] == ("pub", "main", "/clients/c1/inbox", b"hi"), c
assert c[4].content_type == "text/plain", c
# A publish no handler matches goes to on_topic: a warning.
echo.process(message("$topic", [("topic", "busbar/n1/echo/other/x"), ("broker", "main")]))
assert calls and calls[-1][:2] == ("log", "WARN"), calls
reply = echo.process(message("stats", []))
assert json.loads(reply.payload) == {"echoed": 2}, reply

# What a message says about its publish (the node's headers come first).
msg = Message(message("$topic", headers + [("retain", "x")]))
assert msg.topic.endswith("r7") and msg.broker == "main" and msg.retained is False
assert msg.response_topic is None
assert Message(message("$topic", [("retain", "true")])).retained


class Multi(BaseService):
    def start(self):
        self.got = []

    @topic("/a/+", broker="field")
    def field(self, msg):
        self.got.append(("field", msg.topic))

    @topic("/a/+")
    @topic("/a/#")
    def any_broker(self, msg):
        self.got.append(("any", msg.topic))

    @topic("b/#")
    def relative(self, msg):
        self.got.append(("relative", msg.topic))


# Several handlers: marks stack, a handler naming the broker wins, each runs once.
calls.clear()
running._Running.service = None
multi = serve(Multi)()
multi.start()
assert [c[1:] for c in calls] == [("field", "/a/+"), (None, "/a/#"), (None, "/a/+"),
                                  (None, "b/#")], calls
svc = running._Running.service
multi.process(message("$topic", [("topic", "a/1"), ("broker", "field")]))
multi.process(message("$topic", [("topic", "a/1"), ("broker", "main")]))
multi.process(message("$topic", [("topic", "a/1/2"), ("broker", "field")]))
multi.process(message("$topic", [("topic", "x/echo/b"), ("broker", "main")]))
assert svc.got == [("field", "a/1"), ("any", "a/1"), ("any", "a/1/2"),
                   ("relative", "x/echo/b")], svc.got

# Publish options.
calls.clear()
svc.publish("t", "txt", qos=0, retain=True, properties={"k": 1})
o = calls[-1][4]
assert o.qos == topics.Qos.AT_MOST_ONCE and o.retain and o.properties == [("k", "1")]
assert o.content_type.startswith("text/plain")
svc.publish("t", b"\x00", properties=[("k", "a"), ("k", "b")], broker="x")
assert calls[-1][1] == "x" and calls[-1][4].properties == [("k", "a"), ("k", "b")]
assert calls[-1][4].content_type == "application/octet-stream"
try:
    svc.publish("t", 1, qos=2)
    raise SystemExit("qos 2 was accepted")
except ValueError:
    pass


# Errors from the node come back as BusError with the code.
def refused(broker, t, p, o):
    raise Err(types.Error(types.ErrorCode.NOT_PERMITTED, "not granted"))


topics.publish = refused
try:
    svc.publish("t", {})
    raise SystemExit("a refused publish did not raise")
except BusError as e:
    assert e.code == types.ErrorCode.NOT_PERMITTED


# A refused @topic subscription fails the start, naming the filter.
def refuse_subscribe(broker, f):
    raise Err(types.Error(types.ErrorCode.NOT_PERMITTED, "nope"))


topics.subscribe = refuse_subscribe
try:
    serve(Multi)().start()
    raise SystemExit("the start succeeded")
except Err as e:
    assert "@topic('/a/+')" in str(e.value), e.value

print("python sdk topics: ok")
