"""A stateful Python service: counts what it is told to add, and keeps the count across hot
swaps (the node hands `self.state` from one version to the next).

Actions: `add` ({"n": k}) → the new count; `get` → {"count", "restored"}.
"""

from busbar import StatefulService, action, serve


class Counter(StatefulService):
    def start(self):
        self.state.setdefault("count", 0)
        self.restored = self.state["count"]

    @action("add")
    def add(self, msg):
        self.state["count"] += int(msg.json().get("n", 1))
        return {"count": self.state["count"]}

    @action("get")
    def get(self, msg):
        return {"count": self.state["count"], "restored": self.restored}


WitWorld = serve(Counter)
