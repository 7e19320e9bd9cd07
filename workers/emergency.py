"""Process entry point: the emergency detector (emergency.status, emergency.watch)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.emergency import EmergencyService


def main() -> None:
    serve_from_config("emergency", EmergencyService.from_config)


if __name__ == "__main__":
    main()
