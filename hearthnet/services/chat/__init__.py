"""Direct chat (issue 9): end-to-end encrypted 1:1 messages on the event log."""
