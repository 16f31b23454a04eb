"""The collections live_qa owns, their indexes, and the escrow its bounties wait in.
The reads and writes are in rooms.py, seats.py, questions.py, history.py (by subject)."""

from __future__ import annotations

from kpay.core.store import IndexSpec

ROOMS = "live_rooms"
TICKETS = "live_tickets"
QUESTIONS = "live_questions"
UPVOTES = "live_upvotes"
MESSAGES = "live_messages"
#: A room's seat counters, spread over shard documents ``<room>#k`` (seats.py).
SEATS = "live_seats"

#: The escrow account that holds paid questions' bounties until answered or refunded.
ESCROW_NAME = "live_qa"

COLLECTIONS = [ROOMS, TICKETS, QUESTIONS, UPVOTES, MESSAGES, SEATS]
INDEXES = [
    IndexSpec.of(ROOMS, "host_id", ("created_at", -1)),
    IndexSpec.of(ROOMS, "state", "starts_at"),
    IndexSpec.of(ROOMS, "state", "refunds_done"),
    IndexSpec.of(TICKETS, "room_id", "status"),
    IndexSpec.of(TICKETS, "user_id", ("created_at", -1)),
    IndexSpec.of(QUESTIONS, "room_id", "status", ("bounty", -1), "created_at"),
    IndexSpec.of(MESSAGES, "room_id", "seq", unique=True),
    IndexSpec.of(SEATS, "room_id"),
]
