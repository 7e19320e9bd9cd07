"""Onboarding (spec core-observability-cli-onboarding §6, M13): invites and joining.

    invite.py  InviteBlob, its text forms (hearthnet://v1/…, the contract's ed25519:…),
               the fresh-device id text (hearthnet-id://v1/…) and OnboardingError
    qr.py      terminal QR (Unicode half blocks) and PNG; reading a QR PNG back
    create.py  `hearthnet invite create`: record the invite in the log, issue the blob
    join.py    `hearthnet invite redeem` / `init --join`: verify, fetch the log, join

Importing this package loads nothing: the QR libraries (qrcode, Pillow, zxing-cpp) and
the network client are imported by the functions that need them.
"""
