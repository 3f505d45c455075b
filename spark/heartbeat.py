"""The Spark job's side of the checkpoint lease: claim it for this attempt (the driver), wait out a
previous driver that may still be writing, renew it while the queries run, stop them when the
lease can no longer be proven held, and end the claim on the way out.

A renewal can fail for two kinds of reasons. The store answers that another run holds the lease
(or it expired): the lease is lost, stop now. Or the call itself fails (throttling, an expired
token, a network error): the lease may well still be ours, so retry, but only while the last
successful renewal still covers us with a safety margin. Past that point nobody can prove the
lease is held, another run may take the checkpoint, and writing on would make two writers share
one checkpoint and two writers in the sinks: stop the query.

Python 3.9 syntax: shipped to EMR with the job.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

log = logging.getLogger("iotpipe.heartbeat")


class LeaseLost(RuntimeError):
    """The checkpoint lease is not (provably) held by this run: it must stop writing."""


class LeaseHeartbeat:
    """Renews `key` for `holder`'s `driver` every `seconds / 3`; calls `on_lost(reason)` once if it cannot."""

    def __init__(
        self,
        store,
        key: str,
        holder: str,
        seconds: float,
        on_lost: Callable[[str], None],
        driver: Optional[str] = None,
        margin: Optional[float] = None,
        clock: Callable[[], float] = time.time,
        retry_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.key, self.holder, self.seconds = store, key, holder, seconds
        self.driver = driver or holder
        self.sleep = sleep
        self.waited_for_previous = 0.0
        self.on_lost = on_lost
        self.margin = seconds / 6 if margin is None else margin
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.held_until = 0.0
        self.lost = threading.Event()
        self._losing = threading.Lock()
        self.lost_reason: Optional[str] = None
        self.transient_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iotpipe-lease-heartbeat", daemon=True)
        # A renewal call that hangs (a network that drops packets) raises nothing: the watchdog
        # stops the queries at the margin before the last proven expiry whatever the call does.
        self._watchdog = threading.Thread(target=self._watch, name="iotpipe-lease-watchdog", daemon=True)

    def renew_once(self) -> bool:
        """One renewal. True: held for `seconds` more. False: taken or expired. Raises on a failed call."""
        asked_at = self.clock()
        if not self.store.renew_driver(self.key, self.holder, self.driver, self.seconds):
            return False
        self.held_until = asked_at + self.seconds
        return True

    def prove_held(self) -> None:
        """Before any query starts: claim the lease for this driver (which fences the previous
        one), wait until the previous driver can no longer write, and renew."""
        asked_at = self.clock()
        wait_until = self.store.claim_driver(self.key, self.holder, self.driver, self.seconds)
        if wait_until is None:
            self._lose(f"lease {self.key} is held by another run or expired (holder {self.holder})")
            raise LeaseLost(self.lost_reason)
        self.held_until = asked_at + self.seconds
        while self.clock() < wait_until:
            # The previous driver did not end its claim (killed, or still running after its step
            # ended FAILED): it stops writing before the expiry it last proved. Keep ours meanwhile.
            log.warning("waiting %.0f s for the previous driver's claim to run out", wait_until - self.clock())
            self.sleep(min(self.seconds / 3, max(wait_until - self.clock(), 0.0)))
            if not self._renew_until_proven():
                raise LeaseLost(self.lost_reason)
        self.waited_for_previous = max(0.0, wait_until - asked_at)
        if not self._renew_until_proven():
            raise LeaseLost(self.lost_reason or f"lease {self.key} is not held by {self.holder}")

    def end_claim(self) -> None:
        """After the queries stopped: let the next driver start without waiting, and leave the run
        the lease for one more period for what follows the step (best effort)."""
        try:
            self.store.end_driver(self.key, self.holder, self.driver, self.seconds)
        except Exception as error:  # the next driver then waits out our claim: slower, still safe
            log.warning("could not end the driver's claim on lease %s: %s", self.key, error)

    def start(self) -> None:
        self._thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.seconds)

    def _renew_until_proven(self) -> bool:
        """Renew; on a failed call retry until the margin before `held_until`. False once lost."""
        while True:
            try:
                if self.renew_once():
                    return True
                self._lose(f"lease {self.key} is held by another run or expired (holder {self.holder})")
                return False
            except Exception as error:  # throttling, expired credentials, network: not a verdict
                self.transient_errors += 1
                deadline = self.held_until - self.margin
                now = self.clock()
                if now >= deadline:
                    self._lose(
                        f"lease {self.key} could not be renewed before {self.margin:.0f} s of its expiry "
                        f"({self.transient_errors} failed calls, last: {type(error).__name__}: {error})"
                    )
                    return False
                log.warning("lease renewal failed, retrying: %s", error)
                if self._stop.wait(min(self.retry_seconds, max(deadline - now, 0.0))):
                    return True  # stopping anyway: nothing more to prove

    def _lose(self, reason: str) -> None:
        with self._losing:
            if self.lost.is_set():
                return
            self.lost_reason = reason
            self.lost.set()
            self.on_lost(reason)

    def _watch(self) -> None:
        while not self._stop.wait(min(self.margin / 4, 1.0)):
            if self.lost.is_set():
                return
            if self.clock() >= self.held_until - self.margin:
                self._lose(
                    f"lease {self.key} was not renewed in time: no renewal succeeded before "
                    f"{self.margin:.0f} s of its expiry (a renewal call may be hanging)"
                )
                return

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            if not self._renew_until_proven():
                return
