"""Process entry point: the alerts worker (alert.send, .list, .ack, .deliver)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.alerts.service import AlertService


def main() -> None:
    serve_from_config("alerts", AlertService.from_config)


if __name__ == "__main__":
    main()
