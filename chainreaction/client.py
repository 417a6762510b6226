"""Client SDK: a causal session over WebSocket/CBOR.

    async with await connect(["ws://127.0.0.1:7104", "ws://127.0.0.1:7105"]) as session:
        await session.put("x", b"1")
        value = await session.get("x")      # b"1" (read-your-writes)
        await session.delete("x")

The session keeps the ChainReaction metadata (DESIGN.md, rules in ``session.py``): for
each key read or written whose stability it does not know yet, ``(version, chainIndex per
DC, log seq)``. Every request carries it, so the frontend needs no per-session state: the
session can move to the next frontend URL (which may be in another DC) at any time, first
``attach``es there (the frontend answers once the session's causal past is applied in
that DC), then re-sends the request without losing causality. ``switch(urls)`` moves a
session on purpose.

Failover (docs/protocol.md §2.4). Give a session several URLs: the frontends of its DC
first (``cluster up`` starts two per DC), then those of other DCs if it may move there.
One request gets ``timeout_s`` in all (default 15 s) and is sent in *attempts*, one
frontend each. The session moves on to the next URL, with the same request (same id, same
``rid``), when

* the connection breaks or cannot be opened (a killed frontend);
* an attempt gets no reply within ``attempt_timeout_s`` (default 1.5 s; connecting and
  attaching included): a stopped (SIGSTOP) or overloaded frontend, or a DC that cannot
  serve this session now (its causal past cannot reach it, its chains are stalled);
* the frontend keeps refusing with a retryable error (``unavailable``, ...) for longer
  than ``attempt_timeout_s``; before that it re-sends there every ``retry_delay_s``;
* the frontend refuses the ``attach`` with ``dependency_timeout`` (its DC has not applied
  the session's past within its ``attach_wait_s``): then the session skips that DC's
  other frontends, which would say the same, for the next URL of another DC, if it has
  one (``left_for_past``). Other refusals (overload, a ring change) are one frontend's.

After a whole round of the URLs without any reply the attempt timeout doubles, so a store
that is slow everywhere still gets the rest of the budget. With a single URL there is
nowhere to go: the attempt lasts the whole budget, as does ``attempt_timeout_s=None``.
A session stays on the frontend that last answered. When the budget runs out the request
raises the last retryable refusal's code, else ``timeout`` (some frontend accepted the
request and never answered), else ``no_frontend`` (none could be reached); the message
lists the frontends tried and what each did.

A write stays in its DC. Its request id makes it apply once *per DC* (every head of the
DC knows the ids its chain applied); a frontend left behind still drives it, so the same
write re-sent to another DC could apply there too, later, with a newer version that
overwrites the session's next writes. So a put/delete, once sent through a frontend of DC
d, is re-sent only to d's frontends (before its first send, with several URLs, the session
learns the connection's DC with an ``attach``; ``dc_of_url`` may tell it beforehand).
When d does not answer, the write ends with the budget (``timeout``: it may still apply
there) and the next operation moves on. Reads, attaches and settles go anywhere.
"""

from __future__ import annotations

import os
from typing import Sequence

import attrs
import trio

from . import codec
from . import messages as m
from .client_connection import CLOSED_ERRORS, Connection as _Connection, why as _why
from .history import REFUSED, HistoryWriter
from .session import SessionState
from .versions import Version


RETRYABLE = m.RETRYABLE  # for a frontend whose error replies predate ``retryable``


class ChainReactionError(Exception):
    """The store refused or could not complete a request. ``code`` is the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidRequest(ChainReactionError):
    """The request itself is wrong, so sending it again cannot succeed: ``code`` is
    ``key_too_large``, ``value_too_large`` or ``bad_request`` (an empty key, one that is not
    valid Unicode, more dependencies than a request carries...; docs/protocol.md §4).
    The SDK raises it before sending anything when it can tell, so a bad request costs no
    round trip and leaves the session as it was; a frontend's refusal raises it too."""


# Refusals of the request as such (the frontend's codes): retrying cannot help.
INVALID = frozenset({m.BAD_REQUEST, m.KEY_TOO_LARGE, m.VALUE_TOO_LARGE, m.UNKNOWN_OP,
                     m.BAD_FRAME})


def _check_key(key) -> None:
    """Refuse a key the frontend would refuse, with its code, before anything is sent."""
    if type(key) is not str:
        raise TypeError(f"keys are str, got {type(key).__name__}")
    problem = m.key_error(key)
    if problem is not None:
        raise InvalidRequest(*problem)


class NoFrontendAvailable(ChainReactionError):
    def __init__(self, message: str) -> None:
        super().__init__("no_frontend", message)


@attrs.frozen
class ReadResult:
    found: bool
    value: bytes | None
    version: Version | None
    chain_index: int  # the position that served it, in DC ``dc``
    stable: bool
    dc: int = 0
    node: str = ""  # the node that served it


@attrs.frozen
class WriteResult:
    version: Version
    chain_index: int
    stable: bool
    dc: int = 0


class _Attempts:
    """What one request's attempts met, for the error that ends it: per frontend URL (in
    the order first tried) each outcome with how often it happened. Bounded, so an error
    message stays short."""

    MAX_URLS = 16
    MAX_OUTCOMES = 4  # per URL; later different ones are only counted

    def __init__(self) -> None:
        self._by_url: dict[str, dict[str, int]] = {}
        self._other = 0  # attempts past the bounds
        self._connected = False  # some attempt reached a frontend

    def add(self, url: str, outcome: str) -> None:
        if not outcome.startswith("cannot connect"):
            self._connected = True
        outcomes = self._by_url.get(url)
        if outcomes is None:
            if len(self._by_url) >= self.MAX_URLS:
                self._other += 1
                return
            outcomes = self._by_url[url] = {}
        if outcome in outcomes or len(outcomes) < self.MAX_OUTCOMES:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        else:
            self._other += 1

    def __bool__(self) -> bool:
        return bool(self._by_url)

    def answered_nothing(self) -> bool:
        """No frontend could even be connected to."""
        return bool(self._by_url) and not self._connected

    def describe(self) -> str:
        parts = [f"{url}: " + ", ".join(outcome + (f" (x{count})" if count > 1 else "")
                                        for outcome, count in outcomes.items())
                 for url, outcomes in self._by_url.items()]
        if self._other:
            parts.append(f"{self._other} more attempts")
        return "; ".join(parts) or "nothing"


class Session:
    """One causal session. Not safe for concurrent use: operations are sequential, which
    is what session order means; open several sessions for parallelism."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 15.0,
                 connect_timeout_s: float = 5.0, attempt_timeout_s: float | None = 1.5,
                 retry_delay_s: float = 0.1, history: HistoryWriter | None = None,
                 process: str = "s0", dc_of_url: dict | None = None,
                 ssl_context=None) -> None:
        """``timeout_s``: the budget of one operation, every attempt included.
        ``attempt_timeout_s``: how long one frontend gets before the same request goes to
        the next URL (None: no limit but the budget; see the module's "Failover").
        ``connect_timeout_s``: opening one connection, within the attempt's time.
        ``retry_delay_s``: the pause before re-sending after a retryable refusal.
        ``ssl_context``: how ``wss://`` URLs verify the frontend (default: the system's
        CAs; ``ssl.create_default_context(cafile=...)`` for a private CA)."""
        self.ssl_context = ssl_context
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("connect() needs at least one frontend URL")
        for url in urls:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"frontend URLs look like ws://HOST:PORT, got {url!r}")
        if not timeout_s > 0 or not connect_timeout_s > 0:
            raise ValueError("timeout_s and connect_timeout_s must be positive")
        if attempt_timeout_s is not None and not attempt_timeout_s > 0:
            raise ValueError("attempt_timeout_s must be positive (or None: no limit)")
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.state = SessionState()
        self.failovers = 0
        self.retries = 0
        self.settles = 0  # entries traded for ``past`` (see _settle_if_needed)
        self.left_for_past = 0  # DCs left because they had not applied the session's past
        self.settle_backoff_s = 30.0  # after a settle failed, before the next try
        self._settle_after = float("-inf")
        self.retry_delay_s = retry_delay_s
        self._url_index = 0
        self._conn: _Connection | None = None
        self._ws = None
        self._attached = True  # a new connection must attach first (if we have metadata)
        self._busy = False
        # Optional history recording (``chainreaction check``): this session's events go
        # to ``history`` as ``process``; ``dc_of_url`` names the DC of an invocation.
        self.history = history
        self.process = process
        self.dc_of_url = dc_of_url or {}
        # URL -> its DC, as its replies said (or ``dc_of_url`` told): a write once sent is
        # re-sent only within its DC (module docstring, "Failover")
        self._dc_of: dict[str, int] = dict(self.dc_of_url)
        self._conn_dc: int | None = None  # the DC of the open connection, once known
        self.final_reads = False  # the checker's final reads, after every fault is healed

    # -- connection management --------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.urls[self._url_index % len(self.urls)]

    def _max_message_size(self) -> int:
        return m.MAX_VALUE_BYTES + m.MAX_DEPS * (m.MAX_KEY_BYTES + 32) + 64 * 1024

    def _connect_budget_s(self) -> float:
        """One connection's time: with somewhere else to go, no more than an attempt."""
        if self.attempt_timeout_s is None or len(self.urls) < 2:
            return self.connect_timeout_s
        return min(self.connect_timeout_s, self.attempt_timeout_s)

    async def _connect(self, timeout_s: float) -> str | None:
        """Open a connection to ``self.url``; None, or why it could not be opened."""
        conn = _Connection(self.url, timeout_s, self._max_message_size(), self.ssl_context)
        try:
            ws = await conn.opened()
        except BaseException:  # our caller gave up: do not leave it connecting
            conn.close()
            raise
        if ws is None:
            return f"cannot connect ({_why(conn.error)})"
        self._conn, self._ws = conn, ws
        self._conn_dc = self._dc_of.get(self.url)  # confirmed by the first reply on it
        # A session with a causal past attaches first on a new connection; what it learns
        # on this one later comes from this DC.
        self._attached = not self.state.must_attach(self._conn_dc)
        return None

    async def _open(self) -> None:
        """Connect to the first URL, from the current one on, that accepts."""
        tried = _Attempts()
        for _ in range(len(self.urls)):
            why = await self._connect(self._connect_budget_s())
            if why is None:
                return
            tried.add(self.url, why)
            self._url_index += 1
        raise NoFrontendAvailable("could not connect to any frontend: " + tried.describe())

    async def _move_on(self) -> None:
        """Leave this frontend: the next request (or attempt) goes to the next URL."""
        await self._close_ws()
        self._url_index += 1
        self.failovers += 1

    async def switch(self, urls: Sequence[str] | str) -> None:
        """Continue this session on other frontends (e.g. another DC). Causality holds: the
        next operation first waits until that DC has applied the session's causal past."""
        await self._close_ws()
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._url_index = 0

    async def _close_ws(self) -> None:
        self._close_ws_now()

    def _close_ws_now(self) -> None:
        conn, self._conn, self._ws = self._conn, None, None
        self._conn_dc = None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        await self._close_ws()

    async def __aenter__(self) -> "Session":
        if self._ws is None:
            await self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def _call(self, req: m.ClientRequest) -> dict:
        if self._busy:
            raise RuntimeError("a Session runs one operation at a time (that is what session "
                               "order means); open one session per concurrent task")
        self._busy = True
        try:
            return await self._call_once(req)
        finally:
            self._busy = False

    async def _call_once(self, req: m.ClientRequest) -> dict:
        """Attempts on one frontend after another (module docstring, "Failover") until a
        reply that is not a retryable refusal, or the budget's end."""
        data = codec.encode_client_request(req)
        now = trio.current_time()
        deadline = now + self.timeout_s
        tried = _Attempts()
        is_write = req.op in ("put", "delete")
        write_dc: int | None = None  # where this write went: it may apply there still
        connection_failures = 0
        unanswered = 0  # attempts that timed out: each full round doubles the next ones
        last_error: dict | None = None  # the last retryable refusal, to explain the end
        on_url_since = now  # when this frontend got the request first
        left_dcs = 0  # DCs left because they refused to attach (_leave_dc)
        while True:
            now = trio.current_time()
            if now >= deadline:
                raise self._out_of_time(tried, last_error, write_dc)
            if write_dc is not None:
                self._skip_other_dcs(write_dc)
            attempt_end = min(deadline, now + self._attempt_s(unanswered))
            if self._ws is None:
                on_url_since = now
                why = await self._connect(min(self._connect_budget_s(), attempt_end - now))
                if why is not None:
                    tried.add(self.url, why)
                    connection_failures += 1
                    self._url_index += 1
                    self.failovers += 1
                    if connection_failures > 3 * len(self.urls) + 3:
                        raise NoFrontendAvailable("no frontend could be reached: "
                                                  + tried.describe())
                    if connection_failures % len(self.urls) == 0:  # a round, none reachable
                        await trio.sleep(max(0.0, min(self.retry_delay_s,
                                                      deadline - trio.current_time())))
                    continue
            reply = None
            elsewhere = False  # connected to another DC than the write's
            attach_refused = False
            try:
                with trio.CancelScope(deadline=attempt_end):
                    # A session with a past attaches on a new connection; a write with
                    # other URLs to go to learns the connection's DC first (the attach
                    # answers it), so that a retry can stay in the DC it went to.
                    if (not self._attached and self.state.must_attach(self._conn_dc)) or (
                            is_write and self._conn_dc is None and len(self.urls) > 1):
                        attached = await self._attach()
                        if not attached.get("ok"):
                            reply = attached  # its error decides below
                            attach_refused = True
                        else:
                            self.state.on_attach(attached)
                            self._attached = True
                            self._conn_dc = self._dc_of[self.url] = attached.get("dc", 0)
                            # chainIndex of this DC now (the request was built before).
                            req = self.state.in_current_dc(req)
                            data = codec.encode_client_request(req)
                    if reply is None:
                        self._attached = True
                        if write_dc is not None and self._conn_dc != write_dc:
                            elsewhere = True
                        else:
                            if is_write:
                                write_dc = self._conn_dc
                            # Only this request's own reply answers it: if the deadline
                            # cancels it, ``reply`` stays None (no reply), never the
                            # attach's reply.
                            reply = await self._exchange(data, req.id)
            except CLOSED_ERRORS as exc:
                # Frontend gone: the next one gets the same request (same rid).
                tried.add(self.url, f"connection lost ({_why(exc)})")
                connection_failures += 1
                await self._move_on()
                if connection_failures > 3 * len(self.urls) + 3:
                    raise NoFrontendAvailable("lost the frontend connection: "
                                              + tried.describe()) from None
                continue
            if elsewhere:
                tried.add(self.url, f"in dc{self._conn_dc}, not dc{write_dc} where the "
                                    "write went")
                await self._move_on()
                continue
            if reply is None:  # no reply within the attempt (or the budget)
                tried.add(self.url, f"no reply in {trio.current_time() - on_url_since:.1f} s")
                unanswered += 1
                if trio.current_time() >= deadline:
                    await self._close_ws()
                    raise self._out_of_time(tried, last_error, write_dc)
                await self._move_on()
                continue
            if "dc" in reply and self._conn_dc is None:
                self._conn_dc = self._dc_of[self.url] = reply["dc"]
            if reply.get("ok"):
                return reply
            code = reply.get("error", "error")
            if not reply.get("retryable", code in RETRYABLE):
                error = InvalidRequest if code in INVALID else ChainReactionError
                raise error(code, reply.get("message", ""))
            # Transient (chain repair, overload, a past not here yet): the same request,
            # same rid, so a write still applies once; elsewhere once this frontend has
            # refused for longer than an attempt.
            last_error = reply
            tried.add(self.url, f"{code} ({reply.get('message', '')})")
            self.retries += 1
            if attach_refused and code == m.DEPENDENCY_TIMEOUT and write_dc is None \
                    and self._leave_dc():
                left_dcs += 1  # (a pause after each round of DCs, if they all refuse)
                if left_dcs % max(1, len(set(self._dc_of.get(u) for u in self.urls))) == 0:
                    await trio.sleep(self.retry_delay_s)
                continue
            if len(self.urls) > 1 and self.attempt_timeout_s is not None \
                    and trio.current_time() - on_url_since >= self.attempt_timeout_s:
                await self._move_on()
                continue
            if trio.current_time() + self.retry_delay_s >= deadline:
                raise self._out_of_time(tried, last_error, write_dc)
            await trio.sleep(self.retry_delay_s)

    def _leave_dc(self) -> bool:
        """On to the next URL not known to be in this connection's DC, if there is one
        (the DC refused to attach: its other frontends lack the session's past too)."""
        here = self._conn_dc if self._conn_dc is not None else self._dc_of.get(self.url)
        if here is None:
            return False
        for step in range(1, len(self.urls)):
            if self._dc_of.get(self.urls[(self._url_index + step) % len(self.urls)]) != here:
                self._close_ws_now()
                self._url_index += step
                self.failovers += 1
                self.left_for_past += 1
                return True
        return False

    def _skip_other_dcs(self, dc: int) -> None:
        """Move to the next URL not known to be in another DC than ``dc`` (one of ``dc``'s
        is there: the write went through it)."""
        for _ in range(len(self.urls)):
            known = self._dc_of.get(self.url)
            if known is None or known == dc:
                return
            if self._ws is not None:
                self._close_ws_now()
            self._url_index += 1

    def _attempt_s(self, unanswered: int) -> float:
        """An attempt's time: the whole budget with one URL (or no attempt timeout), else
        ``attempt_timeout_s``, doubled after each full round of unanswered attempts."""
        if self.attempt_timeout_s is None or len(self.urls) < 2:
            return self.timeout_s
        return self.attempt_timeout_s * 2 ** min(unanswered // len(self.urls), 16)

    def _out_of_time(self, tried: "_Attempts", last_error: dict | None,
                     write_dc: int | None = None) -> ChainReactionError:
        """The error that ends a request whose budget ran out, naming what was tried."""
        where = f"; tried {tried.describe()}" if tried else ""
        if write_dc is not None and any(self._dc_of.get(u) not in (None, write_dc)
                                        for u in self.urls):
            where += (f"; the write went to dc{write_dc} and may apply there still, so it "
                      "was not sent to another DC (where it could apply a second time)")
        if last_error is not None:  # say why the retries did not succeed
            return ChainReactionError(last_error.get("error", "error"),
                                      f"{last_error.get('message', '')} (retried for "
                                      f"{self.timeout_s:g} s{where})")
        if tried.answered_nothing():
            return NoFrontendAvailable(f"no frontend reached in {self.timeout_s:g} s{where}")
        return ChainReactionError("timeout", f"no reply in {self.timeout_s:g} s{where}")

    async def _attach(self) -> dict:
        """Attach on a new connection: the last attach's reply, or the first refusal. Reads
        can leave more entries than one request carries (MAX_DEPS); then several attaches
        go one after another: each only waits until its part of the past is here."""
        keys = list(self.state.metadata)
        for start in range(0, max(len(keys), 1), m.MAX_DEPS):
            attach = self.state.attach_request(keys[start:start + m.MAX_DEPS])
            reply = await self._exchange(codec.encode_client_request(attach), attach.id)
            if not reply.get("ok"):
                break
        return reply

    async def _exchange(self, data: bytes, request_id: int) -> dict:
        await self._ws.send_message(data)
        while True:
            reply = codec.decode_client(await self._ws.get_message())
            if reply.get("id") == request_id and "push" not in reply:
                return reply
            if reply.get("id") is None and reply.get("ok") is False:
                return reply  # the frontend could not read our request at all

    @property
    def metadata(self) -> dict:
        """(key, origin DC) -> Entry(version, chain per DC, seq) for versions not yet known
        stable (the rest of the causal past is ``state.past``)."""
        return self.state.metadata

    async def _recorded_call(self, req: m.ClientRequest, f: str, key: str,
                             value: bytes | None) -> dict:
        if self.history is None:
            return await self._call(req)
        invoked = self.history.invoke(self.process, self.dc_of_url.get(self.url), f, key, value)
        try:
            reply = await self._call(req)
        except ChainReactionError as exc:
            certain = f == "read" or exc.code in REFUSED
            self.history.complete(invoked, "fail" if certain else "info", error=exc.code,
                                  final=self.final_reads)
            raise
        except BaseException:  # cancelled mid-request: a write may still apply
            self.history.complete(invoked, "fail" if f == "read" else "info",
                                  error="interrupted")
            raise
        self.history.complete(invoked, "ok", value=reply.get("value") if f == "read" else value,
                              version=reply.get("version"), dc=reply.get("dc"),
                              final=self.final_reads,
                              collected_floor=reply.get("collected_floor"))
        return reply

    async def _settle_if_needed(self) -> None:
        """A session that reads many versions not yet stable gathers entries; trade them for
        ``past`` before they grow too many to send (chainreaction/session.py)."""
        while self.state.needs_settle and trio.current_time() >= self._settle_after:
            try:
                reply = await self._call(self.state.settle_request())
            except ChainReactionError:
                # The operation goes on with what it can carry. The DC cannot confirm
                # everything now (an entry may be unconfirmable for long: a version lost
                # with k=1): don't spend every operation's budget on it; try again later.
                self._settle_after = trio.current_time() + self.settle_backoff_s
                return
            self.state.on_settle(reply)
            self.settles += 1

    async def read(self, key: str) -> ReadResult:
        """Read ``key`` with its version metadata."""
        _check_key(key)
        await self._settle_if_needed()
        reply = await self._recorded_call(self.state.get_request(key), "read", key, None)
        self.state.on_read(key, reply)
        return ReadResult(bool(reply.get("found")), reply.get("value"), reply.get("version"),
                          reply.get("chain_index", 0), bool(reply.get("stable")),
                          reply.get("dc", 0), reply.get("node") or "")

    async def get(self, key: str) -> bytes | None:
        """The value of ``key`` (None if absent or deleted), never older than this session
        has already seen or caused."""
        return (await self.read(key)).value

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """The values of ``keys`` (None: absent or deleted) from one causal snapshot, a
        GET-TRANSACTION: no value beside an older version of another key than one in its
        causal past, and never older than what this session has seen or caused."""
        return {key: result.value for key, result in (await self.read_many(keys)).items()}

    async def read_many(self, keys: Sequence[str]) -> dict[str, ReadResult]:
        """``get_many`` with each key's version metadata."""
        keys = list(dict.fromkeys(keys))
        if not keys or len(keys) > m.MAX_TXN_KEYS:
            raise InvalidRequest(m.BAD_REQUEST, f"a transaction reads 1 to {m.MAX_TXN_KEYS} "
                                 f"keys, not {len(keys)}")
        for key in keys:
            _check_key(key)
        await self._settle_if_needed()
        req = self.state.txn_request(keys)
        if self.history is None:
            reply = await self._call(req)
        else:
            reply = await self._recorded_txn(req)
        self.state.on_txn(reply)
        dc = reply.get("dc", 0)
        return {r["key"]: ReadResult(bool(r.get("found")), r.get("value"), r.get("version"),
                                     r.get("chain_index", 0), bool(r.get("stable")), dc)
                for r in reply["results"]}

    async def _recorded_txn(self, req: m.ClientRequest) -> dict:
        invoked = self.history.invoke_txn(self.process, self.dc_of_url.get(self.url), req.keys)
        try:
            reply = await self._call(req)
        except BaseException as exc:  # a transaction changes nothing: failed, whatever
            self.history.complete_txn(invoked, "fail", error=getattr(exc, "code", None)
                                      or "interrupted", final=self.final_reads)
            raise
        self.history.complete_txn(invoked, "ok", results=[
            (r["key"], r.get("value"), r.get("version"), r.get("collected_floor"))
            for r in reply["results"]],
            dc=reply.get("dc"), final=self.final_reads)
        return reply

    async def _write(self, op: str, key: str, value: bytes | None) -> WriteResult:
        _check_key(key)
        if value is not None and len(value) > m.MAX_VALUE_BYTES:
            raise InvalidRequest(m.VALUE_TOO_LARGE, f"value is {len(value)} bytes, over the "
                                 f"limit of {m.MAX_VALUE_BYTES}")
        await self._settle_if_needed()
        if self.state.write_dep_count > m.MAX_DEPS:
            # Settling failed (this DC could not confirm them) and reads kept adding: the
            # write cannot carry them all. A later settle, once the DC recovers, can.
            raise InvalidRequest(m.BAD_REQUEST, (
                f"this session depends on {self.state.write_dep_count} versions not known to be "
                f"stable yet, a write carries at most {m.MAX_DEPS}, and this DC could not "
                "confirm them stable (settle); retry once it recovers"))
        reply = await self._recorded_call(
            self.state.write_request(op, key, value, os.urandom(16)),
            "write" if op == "put" else "delete", key, value)
        self.state.on_write(key, reply)
        return WriteResult(reply["version"], reply["chain_index"], bool(reply.get("stable")),
                           reply.get("dc", 0))

    async def put(self, key: str, value: bytes) -> WriteResult:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("values are bytes")
        return await self._write("put", key, bytes(value))

    async def delete(self, key: str) -> WriteResult:
        return await self._write("delete", key, None)

    async def stats(self) -> dict:
        return (await self._call(self.state.stats_request()))["stats"]


async def connect(urls: Sequence[str] | str, **options) -> Session:
    """Open a session on the first reachable frontend of ``urls``."""
    session = Session(urls, **options)
    await session._open()
    return session
