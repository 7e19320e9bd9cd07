"""The marketplace (spec svc-market-chat-file §1, issue 9): posts on the signed event log,
a view derived from it, and the `market.*` capabilities of the `market` worker."""
