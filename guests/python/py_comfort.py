"""Asks another service for its statistics and reports comfort towards the hub: a Python
service calling a Rust one (the demo's `aggregator`).

Every `interval_ms` (default 5000) it calls `source` (default "aggregator") with action
`stats`, turns its running average into {"comfort": "cold" | "ok" | "warm", "avg": ..} against
`low` (default 19.0) and `high` (default 24.0), and submits it to Com. Action `last`
answers the last report.
"""

from busbar import BaseService, BusError, action, serve, timer


class Comfort(BaseService):
    def start(self):
        self.source = self.property("source", "aggregator")
        self.low = self.property("low", 19.0)
        self.high = self.property("high", 24.0)
        self.last = None
        self.set_interval("report", self.property("interval_ms", 5000))

    @timer("report")
    def report(self):
        try:
            stats = self.call(self.source, "stats", timeout_ms=2000)
        except BusError as e:
            self.warn(f"asking `{self.source}` for stats failed: {e}")
            return
        mean = (stats or {}).get("avg")
        if mean is None:
            return  # no window complete yet
        comfort = "cold" if mean < self.low else "warm" if mean > self.high else "ok"
        self.last = {"comfort": comfort, "avg": mean, "source": self.source}
        self.submit_message(self.last, headers={"kind": "comfort"})
        self.debug(f"comfort {comfort} at {mean} °C")

    @action("last")
    def get_last(self, msg):
        return self.last


WitWorld = serve(Comfort)
