"""argon2id password hashing: OWASP parameters, verification, the dummy hash, rehash policy."""

import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from authsvc.config import MIN_ARGON2_MEMORY_KIB, MIN_ARGON2_TIME_COST
from authsvc.passwords import Passwords

PASSWORD = "correct horse battery"
OWASP = {"time_cost": 2, "memory_kib": 19 * 1024, "parallelism": 1}


def phc_parameters(stored_hash):
    """The (variant, m, t, p) of an argon2 PHC string."""
    _, variant, _, params, _, _ = stored_hash.split("$")
    values = dict(pair.split("=") for pair in params.split(","))
    return variant, int(values["m"]), int(values["t"]), int(values["p"])


@pytest.fixture(scope="module")
def passwords():
    """A hasher with the OWASP minimum parameters (the defaults)."""
    return Passwords(**OWASP)


@pytest.fixture(scope="module")
def stored(passwords):
    """A stored hash of PASSWORD."""
    return passwords.hash(PASSWORD)


def test_hash_is_argon2id_with_owasp_parameters(stored):
    """Hashes are argon2id with m >= 19 MiB, t >= 2, p >= 1."""
    variant, memory, time_cost, parallelism = phc_parameters(stored)
    assert variant == "argon2id"
    assert memory >= MIN_ARGON2_MEMORY_KIB == 19456
    assert time_cost >= MIN_ARGON2_TIME_COST == 2
    assert parallelism >= 1


def test_hash_uses_the_configured_parameters():
    """Stronger configured parameters show up in the hash."""
    stronger = Passwords(time_cost=3, memory_kib=32 * 1024, parallelism=2)
    assert phc_parameters(stronger.hash(PASSWORD)) == ("argon2id", 32 * 1024, 3, 2)


def test_hashes_are_salted(passwords, stored):
    """Hashing the same password twice gives different strings, both of which verify."""
    again = passwords.hash(PASSWORD)
    assert again != stored
    assert passwords.verify(again, PASSWORD)


def test_hash_does_not_contain_the_password(stored):
    """The stored hash does not leak the password."""
    assert PASSWORD not in stored


def test_verify_accepts_the_right_password(passwords, stored):
    """verify is True for the password that was hashed."""
    assert passwords.verify(stored, PASSWORD) is True


@pytest.mark.parametrize(
    "attempt", ["wrong", "", "Correct horse battery", PASSWORD + " ", PASSWORD[:-1]]
)
def test_verify_refuses_other_passwords(passwords, stored, attempt):
    """verify is False (not an exception) for any other password."""
    assert passwords.verify(stored, attempt) is False


@pytest.mark.parametrize("stored_hash", [None, ""])
def test_unknown_user_verifies_against_the_dummy_hash(monkeypatch, stored_hash):
    """verify(None, pw) is False and still runs a real argon2 verification (equal timing)."""
    passwords = Passwords(**OWASP)
    calls = []
    real_verify = PasswordHasher.verify

    def spy(self, hash_, password):
        calls.append(hash_)
        return real_verify(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert passwords.verify(stored_hash, PASSWORD) is False
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")
    assert phc_parameters(calls[0])[1:] == (OWASP["memory_kib"], OWASP["time_cost"], 1)


@pytest.mark.parametrize("garbage", ["not-a-hash", "$argon2id$v=19$broken", "$2b$12$abcdefghijk"])
def test_unreadable_hash_is_false_and_costs_a_dummy_verification(monkeypatch, garbage):
    """A corrupt stored hash is False (no crash) and still pays for one argon2 verification."""
    passwords = Passwords(**OWASP)
    verified = []
    real_verify = PasswordHasher.verify

    def spy(self, hash_, password):
        try:
            return real_verify(self, hash_, password)
        except VerificationError:
            verified.append(hash_)
            raise

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert passwords.verify(garbage, PASSWORD) is False
    assert len(verified) == 1
    assert verified[0].startswith("$argon2id$")


def test_needs_rehash_is_false_for_current_parameters(passwords, stored):
    """A hash made with the configured parameters needs no rehash."""
    assert passwords.needs_rehash(stored) is False


@pytest.mark.parametrize(
    "older",
    [
        PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID),
        PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.I),
        PasswordHasher(time_cost=3, memory_cost=19 * 1024, parallelism=1, type=Type.ID),
        PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY),
    ],
)
def test_needs_rehash_for_hashes_made_with_other_parameters(passwords, older):
    """Weaker, different-variant or otherwise different parameters ask for a rehash."""
    legacy = older.hash(PASSWORD)
    assert passwords.needs_rehash(legacy) is True
    assert passwords.verify(legacy, PASSWORD) is True


def test_stronger_configuration_asks_old_hashes_to_be_rehashed(stored):
    """Raising the configured cost marks hashes made with the old cost for rehash."""
    stronger = Passwords(time_cost=3, memory_kib=19 * 1024, parallelism=1)
    assert stronger.needs_rehash(stored) is True
    assert stronger.verify(stored, PASSWORD) is True


# -- bounded hashing --------------------------------------------------------------------


class HeldHasher:
    """A stand-in for argon2's hasher: counts the calls inside it, holds each one until
    the test lets them all go, and names the threads they ran on."""

    def __init__(self):
        import threading

        self.inside = 0
        self.peak = 0
        self.threads = set()
        self.changed = threading.Condition()
        self.go = threading.Event()

    def verify(self, stored_hash, password):
        import threading

        with self.changed:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()
        self.go.wait()
        with self.changed:
            self.inside -= 1
        return True

    def wait_for(self, condition):
        """Wait (10 s at most: a hang is a failure, not a measurement) until true."""
        with self.changed:
            assert self.changed.wait_for(condition, timeout=10), "never happened"


def verify_from_many_threads(hasher, callers):
    """``callers`` threads verify at once while the hashes are held, then all go.

    Returns what the hasher saw once every caller had asked for its hash.
    """
    import threading

    from authsvc.passwords import hashing_threads

    held = HeldHasher()
    hasher._hasher = held
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(hasher.verify("$argon2id$x", PASSWORD)))
        for _ in range(callers)
    ]
    for thread in threads:
        thread.start()
    # Every caller has asked (its hash runs or waits for a thread), and the threads
    # there are hold theirs: one caller more than the bound would be inside now.
    held.wait_for(lambda: hashing_threads.pending() == callers)
    held.wait_for(lambda: held.inside == min(callers, hashing_threads.size))
    inside_while_all_asked = held.inside
    held.go.set()
    for thread in threads:
        thread.join()
    assert results == [True] * callers
    return inside_while_all_asked, held


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_hashes_at_once_are_bounded_by_the_configured_concurrency(limit):
    """More callers than the bound: exactly ``limit`` hashes run at once, the others
    queue, and the same ``limit`` threads run them all (their arenas hold the memory)."""
    from authsvc.passwords import hashing_threads

    hasher = Passwords(**OWASP, concurrency=limit)
    try:
        assert hashing_threads.size == limit
        inside, held = verify_from_many_threads(hasher, callers=limit * 3)
        assert inside == limit
        assert held.peak == limit
        assert len(held.threads) == limit
        assert all(name.startswith("argon2") for name in held.threads)
    finally:
        hashing_threads.configure(limit=0)


def test_automatic_concurrency_is_the_process_share_of_the_cores():
    """AUTHSVC_HASH_CONCURRENCY=0: the cores divided by the worker processes, rounded
    up (outside gunicorn, one process: every core); hashing follows that number."""
    from authsvc.passwords import cpu_cores, hashing_threads, share_of_cores

    assert [share_of_cores(2, n) for n in (1, 2, 3, 4)] == [2, 1, 1, 1]
    assert [share_of_cores(4, n) for n in (1, 2, 3, 4, 8)] == [4, 2, 2, 1, 1]
    assert share_of_cores(1, 0) == 1
    hasher = Passwords(**OWASP, concurrency=0)
    assert hashing_threads.size == cpu_cores()
    try:
        hashing_threads.configure(processes=cpu_cores() + 1)  # more workers than cores
        assert hashing_threads.size == 1
        inside, held = verify_from_many_threads(hasher, callers=3)
        assert (inside, held.peak, len(held.threads)) == (1, 1, 1)
    finally:
        hashing_threads.configure(processes=1)


def test_each_gunicorn_worker_learns_how_many_workers_share_the_cores():
    """gunicorn's post_fork hook passes its worker count (--workers/-w included) to the
    new worker's hashing threads, before the worker builds its app."""
    from types import SimpleNamespace

    from authsvc import gunicorn_conf
    from authsvc.passwords import cpu_cores, hashing_threads, share_of_cores

    server = SimpleNamespace(cfg=SimpleNamespace(workers=3))
    try:
        gunicorn_conf.post_fork(server, worker=None)
        assert hashing_threads.size == share_of_cores(cpu_cores(), 3)
        hashing_threads.configure(limit=5)  # AUTHSVC_HASH_CONCURRENCY wins
        assert hashing_threads.size == 5
    finally:
        hashing_threads.configure(limit=0, processes=1)


def test_unknown_users_still_cost_one_bounded_hash(monkeypatch):
    """No user (no stored hash): the dummy hash is verified, through the same bounded
    threads as a real one, so "no such user" and "wrong password" take the same time."""
    import threading

    from authsvc.passwords import hashing_threads

    hasher = Passwords(**OWASP, concurrency=1)
    seen = []
    real = hasher._hasher

    class Recording:
        def verify(self, stored_hash, password):
            seen.append((stored_hash, threading.current_thread().name))
            return real.verify(stored_hash, password)

    try:
        monkeypatch.setattr(hasher, "_hasher", Recording())
        assert hasher.verify(None, PASSWORD) is False
        assert hasher.verify("not a hash", PASSWORD) is False
        dummy = hasher._dummy_hash
        assert [stored for stored, _ in seen] == [dummy, "not a hash", dummy]
        assert all(name.startswith("argon2") for _, name in seen)
    finally:
        hashing_threads.configure(limit=0)


def test_a_forked_child_gets_hashing_threads_of_its_own():
    """After a fork (gunicorn worker) hashing works, on the child's own threads."""
    import os
    import signal
    import time
    import warnings

    hasher = Passwords(**OWASP)
    stored = hasher.hash(PASSWORD)  # the parent's hashing threads exist now
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: verify, report, exit without running pytest's teardown
        ok = hasher.verify(stored, PASSWORD)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:  # waiting on the parent's threads: it never ends
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child never finished hashing")
        time.sleep(0.05)
    answer = os.read(read, 1)
    os.close(read)
    assert answer == b"1"
