"""Process entry point: the file worker (file.read, file.list, file.advertise, file.put and
the owner's file.add, .get, .ls, .pin, .unpin, .gc, .status, .verify, .import)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.file.service import FileService


def main() -> None:
    serve_from_config("file", FileService.from_config)


if __name__ == "__main__":
    main()
