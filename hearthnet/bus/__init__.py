"""The capability bus inside one node: frame protocol (protocol.py), the asyncio DEALER
socket (zmqloop.py), the Service interface (service.py), the worker runtime that connects
a Service to the broker (worker.py) and the broker's client side used by the gateway
(client.py). The broker itself lives in hearthnet/broker/."""
