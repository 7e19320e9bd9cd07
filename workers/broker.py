"""Process entry point: the ZeroMQ capability broker."""
import signal

from hearthnet.broker.core import Broker
from hearthnet.identity.keys import own_node_id
from hearthnet.process import start_process
from hearthnet.supervisor_rpc import SupervisorRpc


def main() -> None:
    cfg, log, _ = start_process("broker")
    broker = Broker(cfg.paths.broker_workers_endpoint, cfg.paths.broker_clients_endpoint,
                    prefer_local=cfg.bus.prefer_local,
                    local_load_threshold=cfg.bus.local_load_threshold,
                    on_worker_death=SupervisorRpc(cfg.paths.supervisor_socket).poke_in_background,
                    node_id=own_node_id(cfg.identity.keys_dir))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: broker.stop())
    broker.serve_forever()
    log.info("broker stopped")


if __name__ == "__main__":
    main()
