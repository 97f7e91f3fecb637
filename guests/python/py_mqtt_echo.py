"""An MQTT echo: a Python service on the node's broker connection (the `topics` interface).

It subscribes to `requests/+` under its base topic (`{base_topic}/{service}/requests/+`) on
the default broker and publishes each request's payload back, content type kept: to the
request's MQTT 5 response topic when it has one, else to `replies/<last level>` under its
base topic. Action `stats` answers {"echoed": n}.

Its manifest entry grants the topics, e.g.
`grants.topics = { subscribe = ["requests/+"], publish = ["replies/+", "/clients/#"] }`
(relative to the base topic; `/` for absolute, where response topics point).
"""

from busbar import BaseService, Reply, action, serve, topic


class MqttEcho(BaseService):
    def start(self):
        self.echoed = 0

    # Subscribed by the SDK before start(); relative, so under `{base_topic}/{service}`.
    @topic("requests/+")
    def request(self, msg):
        body = Reply(msg.content_type, msg.payload)  # the payload as it came, its type too
        if msg.response_topic:
            to = "/" + msg.response_topic  # absolute: the publisher names the whole topic
        else:
            to = "replies/" + msg.topic.rsplit("/", 1)[-1]  # relative, like the request
        self.publish(to, body, broker=msg.broker)  # back through the connection it came by
        self.echoed += 1

    @action("stats")
    def stats(self, msg):
        return {"echoed": self.echoed}


WitWorld = serve(MqttEcho)
