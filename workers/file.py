"""Process entry point: the file worker (file.read, file.list, file.advertise, file.put and
the owner's file.add, .get, .ls, .pin, .unpin, .gc, .status, .verify, .import)."""
import sys

from hearthnet.bus.worker import run_service
from hearthnet.errors import HearthNetError
from hearthnet.process import start_process
from hearthnet.services.file.service import FileService


def main() -> None:
    cfg, log, name = start_process("file")
    try:
        service = FileService.from_config(cfg)
    except HearthNetError as exc:  # no key, or a store it cannot open: one plain line, then FATAL
        log.error(exc.message, extra={"code": exc.code})
        sys.exit(1)
    run_service(service, cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
