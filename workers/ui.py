"""Process entry point: the Gradio UI (hearthnet/ui/), talking only to the local API."""
from hearthnet.process import start_process


def main() -> None:
    cfg, _log, _name = start_process("ui")
    from hearthnet.ui.app import serve

    serve(cfg)


if __name__ == "__main__":
    main()
