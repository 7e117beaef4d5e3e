"""Who may open which page: secret tokens, short-lived sessions, one-time offer nonces and a
rate limit on failed attempts (ROS-free, no I/O; the server asks, this answers).
A page that needs no token (a viewer when no viewer token is set) is never locked out.

Roles: ``operator`` (makes the robot speak: always needs a token; without one configured the
operator page is closed) and ``viewer`` (read-only; needs a token only when one is configured).
A token is exchanged once for a session (a random id in an HttpOnly cookie) that expires after
``session_ttl_s``; every WebRTC offer must also carry a nonce issued with the page, usable once,
so a captured offer request cannot be replayed. Failed token attempts are counted per client
address: after ``max_failures`` inside ``failure_window_s`` the address is refused for the rest
of that window, right token or not (a brute force costs minutes per handful of guesses).
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROLES = ('viewer', 'operator')
MIN_TOKEN_LENGTH = 8   # shorter secrets are refused at start-up


class AccessError(ValueError):
    """A configuration of the gate that cannot be used (the text names the parameter)."""


def read_token(value: str, file: str, name: str) -> str:
    """The token from parameter ``name`` or its file (``name + '_file'``, first line, stripped);
    '' when neither is set. Raises AccessError for both set, an unreadable file or a short token."""
    if value and file:
        raise AccessError(f"parameters '{name}' and '{name}_file' are both set: give one")
    if file:
        try:
            lines = Path(file).read_text().split()
        except OSError as error:
            raise AccessError(f"parameter '{name}_file': cannot read {file!r}: {error.strerror}") from None
        if not lines:
            raise AccessError(f"parameter '{name}_file': {file!r} is empty")
        value = lines[0]
    if value and len(value) < MIN_TOKEN_LENGTH:
        raise AccessError(f"parameter '{name}': a token needs at least {MIN_TOKEN_LENGTH} characters")
    return value


@dataclass
class _Session:
    role: str
    expires: float
    nonces: set[str] = field(default_factory=set)


class AccessGate:
    """Tokens -> sessions -> one-time nonces, with a per-address failure limit."""

    def __init__(self, tokens: dict[str, str], session_ttl_s: float = 3600.0, max_failures: int = 5,
                 failure_window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens = {role: token for role, token in tokens.items() if token}
        self.session_ttl_s = session_ttl_s
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._failures: dict[str, list[float]] = {}
        self.refused = 0   # every refused request, for diagnostics

    def is_open(self, role: str) -> bool:
        """Whether the role's page can be used at all (operator: only with a token configured)."""
        return role == 'viewer' or role in self._tokens

    def needs_token(self, role: str) -> bool:
        return role in self._tokens or role == 'operator'

    def locked_out(self, address: str) -> bool:
        """Too many recent failures from ``address``."""
        now = self._clock()
        recent = [t for t in self._failures.get(address, []) if now - t < self.failure_window_s]
        self._failures[address] = recent
        return len(recent) >= self.max_failures

    def login(self, role: str, token: str | None, address: str) -> str | None:
        """A new session id for a right token (or for a viewer when no viewer token is set);
        None when refused (closed role, lockout, missing or wrong token: counted as a failure)."""
        expected = self._tokens.get(role)
        if not self.is_open(role) or (expected is not None and self.locked_out(address)):
            self.refused += 1
            return None
        if expected is not None and not (token and hmac.compare_digest(token.encode(), expected.encode())):
            self._failures.setdefault(address, []).append(self._clock())
            self.refused += 1
            return None
        self._expire()
        session = secrets.token_urlsafe(24)
        self._sessions[session] = _Session(role, self._clock() + self.session_ttl_s)
        return session

    def session_role(self, session: str | None) -> str | None:
        """The role of a live session, None for an unknown or expired one."""
        entry = self._sessions.get(session or '')
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.role

    def issue_nonce(self, session: str) -> str:
        """A one-time nonce for the next offer of ``session`` (which must be live)."""
        nonce = secrets.token_urlsafe(16)
        self._sessions[session].nonces.add(nonce)
        return nonce

    def redeem(self, session: str | None, nonce: str | None, role: str) -> bool:
        """True once for a nonce issued to a live session of ``role``; False (and counted)
        for an expired session, another role, or a nonce already used or never issued."""
        entry = self._sessions.get(session or '')
        ok = (entry is not None and entry.expires > self._clock() and entry.role == role
              and nonce is not None and nonce in entry.nonces)
        if ok:
            entry.nonces.discard(nonce)
        else:
            self.refused += 1
        return ok

    def _expire(self) -> None:
        now = self._clock()
        for session in [s for s, e in self._sessions.items() if e.expires <= now]:
            del self._sessions[session]
