"""The WebSocket hub: channels, seq numbers, history, presence, backpressure.

The hub owns this node's connections and subscriptions; the broker moves
publications between nodes and keeps per-channel seq and history. Application code
publishes through ``app.publish`` (the broker), never straight to sockets.
"""
