"""A simulated temperature sensor, the Python twin of guests/temperature-sensor.

Every `interval_ms` (default 1000) it takes a reading {"sensor", "seq", "celsius"}, submits
it to Com and sends it as action `reading` to each service in `forward_to`.

Properties: `sensor_id` (default "sensor-1"), `interval_ms`, `values` (comma-separated
temperatures to cycle through; without it the temperature wanders around 22 °C), `seed`
(of that walk, default 1), `forward_to` (comma-separated services, default
"threshold-alert,aggregator"; empty for none), `count` (stop after this many readings).
"""

from busbar import BaseService, BusError, serve, timer

MASK = (1 << 64) - 1


class TemperatureSensor(BaseService):
    def start(self):
        values = self.property("values", "")
        try:
            self.values = [float(v) for v in values.split(",")] if values else []
        except ValueError as e:
            raise ValueError(f"property `values` ({values!r}): {e}") from None
        self.rng = max(self.property("seed", 1), 1)
        self.celsius = 22.0
        self.seq = 0
        self.count = self.property("count", -1)
        self.sensor = self.property("sensor_id", "sensor-1")
        forward = self.property("forward_to", "threshold-alert,aggregator")
        self.forward_to = [s.strip() for s in forward.split(",") if s.strip()]
        interval = self.property("interval_ms", 1000)
        if self.count != 0:
            self.set_interval("sample", interval)
        self.info(f"sampling every {interval} ms, forwarding to {self.forward_to}")

    def next_celsius(self) -> float:
        if self.values:
            return self.values[(self.seq - 1) % len(self.values)]
        # xorshift64, as the Rust sensor does
        r = self.rng
        r ^= (r << 13) & MASK
        r ^= r >> 7
        r ^= (r << 17) & MASK
        self.rng = r
        step = (r >> 11) / float(1 << 53) - 0.5
        self.celsius += step + (22.0 - self.celsius) * 0.1
        return round(self.celsius, 2)

    @timer("sample")
    def sample(self):
        if 0 <= self.count <= self.seq:
            return
        self.seq += 1
        reading = {"sensor": self.sensor, "seq": self.seq, "celsius": self.next_celsius()}
        try:
            self.submit_message(reading)
        except BusError as e:
            self.warn(f"reading {self.seq}: submit to Com failed: {e}")
        for destination in self.forward_to:
            try:
                self.submit_action(destination, "reading", reading)
            except BusError as e:
                self.warn(f"reading {self.seq}: sending to `{destination}` failed: {e}")
        if self.count == self.seq:
            self.cancel_timer("sample")
            self.info(f"sent {self.seq} readings, done")


WitWorld = serve(TemperatureSensor)
