"""Process entry point: the chat worker (chat.send, .history, .read, .unread, .deliver)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.chat.service import ChatService


def main() -> None:
    serve_from_config("chat", ChatService.from_config)


if __name__ == "__main__":
    main()
