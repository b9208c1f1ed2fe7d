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


def test_hashes_run_on_at_most_one_thread_per_core(monkeypatch):
    """More request threads than cores: hashes queue, never more than cores run at once."""
    import threading
    import time

    from authsvc import passwords as module

    cores = module.cpu_cores()
    requests = cores * 4
    running, peak, names = [0], [0], set()
    lock = threading.Lock()

    class SlowHasher:
        def verify(self, stored_hash, password):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                names.add(threading.current_thread().name)
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return True

    hasher = Passwords(time_cost=2, memory_kib=19 * 1024, parallelism=1)
    monkeypatch.setattr(hasher, "_hasher", SlowHasher())
    start = threading.Barrier(requests)
    results = []

    def login():
        start.wait()
        results.append(hasher.verify("$argon2id$stored", PASSWORD))

    threads = [threading.Thread(target=login) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * requests
    assert peak[0] == cores
    # The same few threads do all the hashing (their malloc arenas hold the memory).
    assert len(names) <= cores
    assert all(name.startswith("argon2") for name in names)


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
