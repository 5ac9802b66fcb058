"""Live state: subscriptions, registrations, publications, and the updates that follow them.

Owns subscription dialogs and the watchers index (`subscriptions`), bindings (`registrar`,
RFC 3261 §10), published presence (`publications`, RFC 3903), a watched user's online status
(`status`) and the stream-driven updates that reach the edges (`updates`). May import
`chalicelib.presence`, `chalicelib.accounts` and the shared core; never `api`.
"""
