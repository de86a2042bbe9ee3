"""An MQTT client standing for the original devices (paho-mqtt, as the original simulators):
publishes readings and collects what arrives on the topics it subscribed to."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class MqttDevice:
    """Connected to the broker on ``port``, subscribed to ``topic`` with QoS 1."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise TimeoutError(f"not subscribed to {topic} after 10 s")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, bytes(message.payload)))

    def messages(self) -> list[tuple[str, bytes]]:
        """What arrived so far: (topic, payload)."""
        with self._lock:
            return list(self.received)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publishes ``payload`` as JSON with QoS 1 and waits for the broker's acknowledgement."""
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
