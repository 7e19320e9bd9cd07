"""One module per tab; each has `build(client: UiClient) -> None`, called inside gr.Tab."""
