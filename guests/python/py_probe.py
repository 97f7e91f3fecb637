"""A Python test and benchmark service: each action exercises one part of the SDK and the
sandbox, and answers what happened.

Actions: `info`, `submit`, `send`, `ask`, `echo`, `fail`, `raise`, `hog`, `connect`,
`read`, `write`, `failures`, and for benchmarks `burst`, `calls`, `ping`, `count` (any
other action is counted as received). Properties: `greeting`, `tick_ms` (a timer that
submits {"tick": n} to Com; 0: none).
"""

import socket
import time

from busbar import BaseService, BusError, ErrorCode, action, serve, timer


class Probe(BaseService):
    def start(self):
        self.ticks = 0
        self.received = 0
        self.failures = []
        tick_ms = self.property("tick_ms", 0)
        if tick_ms:
            self.set_interval("tick", tick_ms)

    @timer("tick")
    def tick(self):
        self.ticks += 1
        self.submit_message({"tick": self.ticks, "from": self.name})

    def on_error(self, failure):
        self.failures.append(failure.__dict__)

    def process(self, msg):
        if msg.action in self._actions:
            return super().process(msg)
        self.received += 1
        return None

    @action("info")
    def info_(self, msg):
        return {
            "name": self.name,
            "greeting": self.property("greeting"),
            "ticks": self.ticks,
            "enabled": self.desired.enabled,
            "debug": self.desired.debug,
            "desired": self.desired.raw,
        }

    @action("submit")
    def submit(self, msg):
        return {"id": self.submit_message(msg.json(), headers={"via": "py-probe"})}

    @action("send")
    def send(self, msg):
        req = msg.json()
        return {"id": self.submit_action(req["destination"], req["action"], req.get("body"))}

    @action("ask")
    def ask(self, msg):
        req = msg.json()
        try:
            reply = self.call(req["destination"], req["action"], req.get("body"),
                              req.get("timeout_ms", 5000))
            return {"ok": reply}
        except BusError as e:
            return {"error": {"code": e.code.name, "message": e.message}}

    @action("echo")
    def echo(self, msg):
        return msg.json()

    @action("fail")
    def fail(self, msg):
        raise BusError(ErrorCode[msg.json()["code"]], "asked to fail")

    @action("raise")
    def raise_(self, msg):
        raise ValueError("py-probe was asked to raise")

    @action("hog")
    def hog(self, msg):
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))

    @action("connect")
    def connect(self, msg):
        req = msg.json()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect((req["host"], req["port"]))
                s.sendall(b"hello from python\n")
            return {"ok": True}
        except OSError as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    @action("read")
    def read(self, msg):
        try:
            with open(msg.json()["path"], encoding="utf-8") as f:
                return {"ok": True, "text": f.read(4096)}
        except OSError as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    @action("write")
    def write(self, msg):
        req = msg.json()
        try:
            with open(req["path"], "w", encoding="utf-8") as f:
                f.write(req["text"])
            return {"ok": True}
        except OSError as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    @action("failures")
    def get_failures(self, msg):
        return self.failures

    @action("burst")
    def burst(self, msg):
        req = msg.json()
        payload = b"x" * req.get("size", 16)
        for _ in range(req["count"]):
            self.submit_action(req["destination"], "reading", payload)
        return {"sent": req["count"]}

    @action("calls")
    def calls(self, msg):
        req = msg.json()
        nanos = []
        for _ in range(req["count"]):
            t = time.perf_counter_ns()
            self.call(req["destination"], "ping", b"\0" * 16, 5000)
            nanos.append(time.perf_counter_ns() - t)
        return {"nanos": nanos}

    @action("ping")
    def ping(self, msg):
        return None

    @action("count")
    def count(self, msg):
        return {"count": self.received}


WitWorld = serve(Probe)
