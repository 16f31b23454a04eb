"""The load test's users (bench/loadtest.py): what a consultant and a student do.

A consultant (set-up) sets a per-minute rate, opens and starts a live room and publishes
a course, as far as the deployment has those plugins' routes; during the run the host
talks in the room now and then. A student connects their socket, then repeats a
weighted random action of ``WEIGHTS`` with a think time between two. Each action is
timed through ``Run.act``; the mix is described in docs/performance.md, "Load test".
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from loadtest_client import Refused, Socket
from loadtest_report import STAMP

if TYPE_CHECKING:
    from loadtest import Run

#: action -> weight in the mix (an action a user cannot do now is skipped).
WEIGHTS = {"home": 20, "search": 10, "course_page": 10, "lessons": 15, "chat": 20, "ask": 5,
           "buy_ticket": 10, "join_room": 10, "buy_course": 5, "topup": 5, "consult": 3}
HOME_SHELF = 6  # static/js/pages/storefront-home.js SHELF_SIZE
WORDS = ("Python", "产品", "直播", "课程", "职场", "咨询")
STARTING_BALANCE = 200_000  # fen, per student; [money] topup_max is 500,000
TOPUP = 1_000
RATE_PER_MINUTE = 10
HOST_THINK = 2  # a host talks in their room every HOST_THINK x --think seconds on average


class Consultant:
    def __init__(self, run: Run, user_id: str, token: str) -> None:
        self.run, self.id, self.api = run, user_id, run.api(token)
        self.token = token
        self.socket: Socket | None = None
        self.room: str | None = None

    async def set_up(self, number: int) -> None:
        run = self.run
        self.socket = await Socket.open(run.url, self.token, run.stats)
        if "/api/v1/consultants/me" in run.paths:
            await self.api.put("/api/v1/consultants/me", {
                "rate_per_minute": RATE_PER_MINUTE, "min_minutes": 1, "max_minutes": 60,
                "available": True, "title": f"负载测试咨询师 {number}"})
            run.free.append(self)
        if "/api/v1/rooms" in run.paths:
            await self.open_room(number)
        if "/api/v1/courses" in run.paths:
            await self.publish_course(number)

    async def open_room(self, number: int) -> None:
        room = (await self.api.post("/api/v1/rooms", {
            "title": f"负载测试直播 {number}", "ticket_price": 100, "question_min_price": 100,
            "free_questions": True, "chat": True}))["room"]
        await self.api.post(f"/api/v1/rooms/{room['id']}/start", {})
        self.room = room["id"]
        self.run.rooms.append(self.room)
        await self.socket.request({"op": "sub", "ch": f"room:{self.room}"})

    async def publish_course(self, number: int) -> None:
        course = (await self.api.post("/api/v1/courses", {
            "title": f"负载测试课程 {number} Python", "price": 990,
            "lessons": [{"title": f"第 {n} 课", "body": "内容", "release": {"after_days": n}}
                        for n in range(5)]}))["course"]
        await self.api.post(f"/api/v1/courses/{course['id']}/publish", {})
        self.run.courses.append(course["id"])

    async def live(self) -> None:
        """The host talks in their room now and then until the run ends."""
        run = self.run
        while self.room and not run.stop.is_set():
            await run.pause(run.random.expovariate(1 / (HOST_THINK * run.think)))
            if run.stop.is_set():
                break
            await run.act("host_message", lambda: self.socket.request({
                "op": "pub", "ch": f"room:{self.room}", "type": "message",
                "data": {"text": f"{STAMP}{time.time():.6f} 主持人"}}))


class Student:
    def __init__(self, run: Run, user_id: str, token: str) -> None:
        self.run, self.id, self.api, self.token = run, user_id, run.api(token), token
        self.socket: Socket | None = None
        self.room = run.random.choice(run.rooms) if run.rooms else None
        self.ticket = self.joined = False
        self.owned: set[str] = set()

    def can(self, action: str) -> bool:
        return {
            "chat": self.joined, "ask": self.joined,
            "buy_ticket": bool(self.room) and not self.ticket,
            "join_room": self.ticket and not self.joined,
            "lessons": bool(self.owned), "course_page": bool(self.run.courses),
            "buy_course": len(self.owned) < len(self.run.courses),
            "topup": self.run.dev, "consult": bool(self.run.free),
        }.get(action, True)

    async def live(self) -> None:
        run = self.run
        await run.pause(run.random.uniform(0, run.ramp))  # people arrive over a while
        while not run.stop.is_set():
            if self.socket is None or self.socket.closed:
                self.joined = False
                if not await run.act("connect", self.connect):
                    await run.pause(1.0)
                    continue
            choices = [name for name in run.weights if self.can(name)]
            action = run.random.choices(choices, [run.weights[name] for name in choices])[0]
            if action == "consult":
                await self.consult()
            else:
                await run.act(action, getattr(self, action))
            await run.pause(run.random.expovariate(1 / run.think))

    async def connect(self) -> None:
        """Open the socket a page opens (token in the URL) and follow ``user:<id>``."""
        self.socket = await Socket.open(self.run.url, self.token, self.run.stats)
        await self.socket.request({"op": "sub", "ch": f"user:{self.id}"})

    async def home(self) -> None:
        """What the home page reads, of the routes this deployment has (as the page
        itself checks them, static/js/pages/storefront-home.js)."""
        shelf = f"?limit={HOME_SHELF}"
        reads = [  # (the route that must exist, what to read)
            ("/api/v1/categories", "/api/v1/categories"),
            ("/api/v1/me/courses", "/api/v1/me/courses?limit=200"),
            ("/api/v1/rooms", f"/api/v1/rooms{shelf}&status=live"),
            ("/api/v1/rooms", f"/api/v1/rooms{shelf}&status=upcoming"),
            ("/api/v1/courses", f"/api/v1/search{shelf}&kind=course"),
            ("/api/v1/consultants", f"/api/v1/consultants{shelf}")]
        await asyncio.gather(*(self.api.get(read) for route, read in reads
                               if route in self.run.paths))

    async def search(self) -> None:
        await self.api.get(f"/api/v1/search?q={self.run.random.choice(WORDS)}&limit=20")

    async def course_page(self) -> None:
        await self.api.get(f"/api/v1/courses/{self.run.random.choice(self.run.courses)}")

    async def lessons(self) -> None:
        course = self.run.random.choice(sorted(self.owned))
        await self.api.get(f"/api/v1/courses/{course}/lessons")

    async def buy_ticket(self) -> None:
        try:
            await self.api.post("/api/v1/orders", {
                "item": {"kind": "live_ticket", "room_id": self.room}, "channel": "wallet"})
        except Refused as refused:
            # An earlier attempt that timed out here went through on the server.
            self.ticket = refused.code == "already_has_ticket"
            raise
        self.ticket = True

    async def join_room(self) -> None:
        await self.socket.request({"op": "sub", "ch": f"room:{self.room}"})
        self.joined = True

    async def chat(self) -> None:
        await self.socket.request({"op": "pub", "ch": f"room:{self.room}", "type": "message",
                                   "data": {"text": f"{STAMP}{time.time():.6f} 你好"}})

    async def ask(self) -> None:
        await self.api.post(f"/api/v1/rooms/{self.room}/questions",
                            {"text": f"负载测试的问题 {self.run.random.randrange(10**6)}"})

    async def buy_course(self) -> None:
        course = self.run.random.choice(sorted(set(self.run.courses) - self.owned))
        try:
            await self.api.post("/api/v1/orders", {
                "item": {"kind": "course", "course_id": course}, "channel": "wallet"})
        except Refused as refused:
            if refused.code == "already_enrolled":  # as for tickets
                self.owned.add(course)
            raise
        self.owned.add(course)

    async def topup(self, amount: int = TOPUP) -> None:
        order = (await self.api.post("/api/v1/orders", {
            "item": {"kind": "wallet_topup", "amount": amount}, "channel": "native"}))["order"]
        await self.api.post(f"/api/v1/dev/orders/{order['id']}/pay", {})

    async def consult(self) -> None:
        """Request a free consultant, both join ``consult:<id>``, the consultant accepts
        (minute 1 is charged), the call runs ``consult_seconds`` (a tick a minute),
        the student ends it. Each step is its own action in the table."""
        run = self.run
        consultant = run.free.pop(run.random.randrange(len(run.free)))
        try:
            session: dict[str, Any] = {}

            async def request() -> None:
                session.update((await self.api.post(
                    "/api/v1/consultations", {"consultant_id": consultant.id}))["consultation"])
                channel = f"consult:{session['id']}"
                await self.socket.request({"op": "sub", "ch": channel})
                await consultant.socket.request({"op": "sub", "ch": channel})

            if not await run.act("consult_request", request):
                return
            path = f"/api/v1/consultations/{session['id']}"
            accepted = await run.act("consult_accept",
                                     lambda: consultant.api.post(f"{path}/accept", {}))
            if accepted:
                await run.pause(run.consult_seconds)

            async def end() -> None:
                await self.api.post(f"{path}/end", {})
                for socket in (self.socket, consultant.socket):
                    await socket.request({"op": "unsub", "ch": f"consult:{session['id']}"})

            await run.act("consult_end", end)
        finally:
            run.free.append(consultant)
