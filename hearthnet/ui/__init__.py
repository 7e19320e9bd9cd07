"""The Gradio UI (issue 10): a worker of its own that talks only to the node's local API
(`hearthnet.ui.client.UiClient` over `hearthnet.localapi.LocalApi`), never to workers
directly and never importing a service module, so it stays swappable and testable."""
