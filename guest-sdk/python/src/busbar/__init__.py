"""busbar's Python SDK: write a busbar service as a Python class.

A service subclasses :class:`BaseService` (or :class:`StatefulService`, to keep its state
across hot swaps), handles actions with methods marked ``@action("name")`` (timer ticks with
``@timer("name")``, MQTT publishes with ``@topic("filter")``), and hands its class to
:func:`serve` in the module componentize-py builds::

    from busbar import BaseService, action, serve

    class Greeter(BaseService):
        def start(self):
            self.greeting = self.property("greeting", "hello")

        @action("greet")
        def greet(self, msg):
            return {"text": f"{self.greeting}, {msg.json()['name']}"}

    WitWorld = serve(Greeter)

Build it with ``busbar-py build greeter.py -o greeter.wasm`` (package ``busbar_build``).
This package runs inside the component: it imports the bindings componentize-py generates
(``wit_world``), which exist only while building.
"""

from .message import (
    BusError,
    DeliveryFailure,
    ErrorCode,
    Message,
    Reply,
    State,
)
from .service import BaseService, StatefulService, action, serve, timer, topic

__all__ = [
    "BaseService",
    "BusError",
    "DeliveryFailure",
    "ErrorCode",
    "Message",
    "Reply",
    "State",
    "StatefulService",
    "action",
    "serve",
    "timer",
    "topic",
]
