"""Version 2 of py_counter, for hot-swap tests and demos: the same state, and `get` also says
which version answers. It imports version 1 (beside it in guests/python) and extends it.
"""

from busbar import action, serve

from py_counter import Counter


class CounterV2(Counter):
    @action("get")
    def get(self, msg):
        return {"count": self.state["count"], "restored": self.restored, "version": 2}


WitWorld = serve(CounterV2)
