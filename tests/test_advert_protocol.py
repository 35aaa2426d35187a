"""Advertisement wire format v1 (gateway/protocol.py): round trips, every rejection path,
and fuzzing (only AdvertError may escape decode_advert)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import random
import struct

import pytest

from gateway.protocol import (
    HEADER,
    MAGIC,
    MAX_BODY,
    VERSION,
    Advert,
    AdvertError,
    decode_advert,
    encode_advert,
)
from topology.addressing import ADV_ADDR, ADV_PORT, SERVICE_PORT

KEY = b"edwc-shared-secret"

BODY = {"gw": "zhongwei", "epoch": 1732240000000000000, "seq": 42, "ts": 1732240042.015,
        "interval": 1.0, "units": {"cuda": [128, 96], "cann": [64, 64]}, "util": 0.166667,
        "queue": 3, "delay_ms": 12.5, "price": 0.32, "green": 0.6,
        "services": ["infer-rt", "train-batch"], "pue": 1.15, "operator": "China Telecom"}


def advert(**over) -> Advert:
    fields = dict(BODY, units={k: tuple(v) for k, v in BODY["units"].items()},
                  services=tuple(BODY["services"]))
    fields.update(over)
    return Advert(**fields)


def frame(body: bytes | dict, *, magic=MAGIC, version=VERSION, flags=0, body_len=None,
          trailer=b"") -> bytes:
    """A message built by hand, bypassing the encoder's validation."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    n = len(body) if body_len is None else body_len
    return struct.pack("!4sBBH", magic, version, flags, n) + body + trailer


def signed(body: bytes | dict, key: bytes = KEY) -> bytes:
    msg = frame(body, flags=1)
    return msg + hmac.new(key, msg, hashlib.sha256).digest()


def rejected(payload, field: str, **kw) -> str:
    with pytest.raises(AdvertError) as e:
        decode_advert(payload, **kw)
    assert str(e.value).startswith(field), f"{e.value!r} should name {field!r}"
    return str(e.value)


# -- constants and round trips -------------------------------------------------------------

def test_constants_match_the_interface():
    assert (ADV_ADDR, ADV_PORT, SERVICE_PORT) == ("10.0.255.254", 6400, 7000)
    assert (MAGIC, VERSION, MAX_BODY, HEADER.size) == (b"CATS", 1, 1024, 8)


def test_round_trip_without_key():
    a = advert()
    msg = encode_advert(a)
    assert msg[:8] == struct.pack("!4sBBH", b"CATS", 1, 0, len(msg) - 8)
    d = decode_advert(msg)
    assert d == a and d.authenticated is False
    assert isinstance(d.units["cuda"], tuple) and isinstance(d.services, tuple)


def test_round_trip_with_key_is_authenticated():
    msg = encode_advert(advert(), KEY)
    assert msg[5] == 1 and len(msg) == 8 + struct.unpack("!H", msg[6:8])[0] + 32
    d = decode_advert(msg, KEY, require_auth=True)
    assert d.authenticated is True
    assert dataclasses.replace(d, authenticated=False) == advert()


def test_optional_fields_absent_and_ints_for_floats():
    a = advert(pue=None, operator=None, price=1, ts=1732240042, services=())
    d = decode_advert(encode_advert(a))
    assert d.pue is None and d.operator is None and d.services == ()
    assert d.price == 1.0 and isinstance(d.price, float) and isinstance(d.ts, float)
    assert b'"pue"' not in encode_advert(a)


def test_unicode_operator_and_boundaries():
    a = advert(operator="中国电信", util=1.0, green=0.0, pue=5.0, interval=0.05, seq=0,
               queue=1_000_000, delay_ms=600_000.0, units={"x": (0, 0)})
    assert decode_advert(encode_advert(a)) == a


def test_encoder_is_compact_and_ordered():
    body = encode_advert(advert())[8:].decode()
    assert body.startswith('{"gw":"zhongwei","epoch":') and ", " not in body
    assert list(json.loads(body)) == list(BODY)


def test_decode_accepts_bytearray_and_memoryview():
    msg = encode_advert(advert())
    assert decode_advert(bytearray(msg)) == decode_advert(memoryview(msg)) == advert()


# -- field validation (decode of a hand-built body, and encode of the same value) ----------

NAN = float("nan")
INF = float("inf")
BAD = [
    ("gw", [123, "", "Zhongwei", "-x", "a" * 33, "zh wei", "zh\n", True, None]),
    ("epoch", [0, -1, 2**63, 1.0, True, "1", None]),
    ("seq", [-1, 2**63, 1.5, True, "0"]),
    ("ts", [0, -1.0, "1", True, False, None, [1]]),
    ("interval", [0.04, 61, 0, True, "1"]),
    ("units", [{}, [], "cuda", {"cuda": [1]}, {"cuda": [1, 2, 3]}, {"cuda": [1, 2]},
               {"CUDA": [1, 1]}, {"a" * 17: [1, 1]}, {"": [1, 1]},
               {f"k{i}": [1, 1] for i in range(9)}, {"cuda": [1.0, 1]},
               {"cuda": [True, 1]}, {"cuda": [1, False]}, {"cuda": [-1, 0]},
               {"cuda": [1_000_001, 0]}, {"cuda": "1,1"}, {"cuda": {"total": 1}}]),
    ("util", [-0.1, 1.1, True, "0.5"]),
    ("queue", [-1, 1_000_001, 1.0, True]),
    ("delay_ms", [-1, 600_001, True]),
    ("price", [-0.01, 100.5, True, None]),
    ("green", [1.01, -1, False]),
    ("services", ["infer-rt", ["Bad"], ["x"] * 33, ["a", "a"], [1], [""], {"a": 1}]),
    ("pue", [0.9, 5.1, True, "1.2"]),
    ("operator", ["x" * 33, "a\nb", 5, "\x00", True]),
]
CASES = [(f, v) for f, values in BAD for v in values]


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v!r}"[:40] for f, v in CASES])
def test_bad_field_is_rejected_by_decode_and_encode(field, value):
    body = dict(BODY, **{field: value})
    rejected(frame(body), field.split(".")[0])
    py_value = value
    if field == "units" and isinstance(value, dict):
        py_value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if field == "services" and isinstance(value, list):
        py_value = tuple(value)
    if field == "pue" and value is None:
        return  # None is "absent" in the dataclass
    with pytest.raises(AdvertError) as e:
        encode_advert(advert(**{field: py_value}))
    assert str(e.value).startswith(field)


def test_null_pue_on_the_wire_is_rejected():
    assert "omit" in rejected(frame(dict(BODY, pue=None)), "pue")


@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("field", ["ts", "interval", "util", "delay_ms", "price", "green",
                                   "pue"])
def test_encode_rejects_nan_and_inf(field, value):
    with pytest.raises(AdvertError, match=f"^{field}: must be finite"):
        encode_advert(advert(**{field: value}))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_decode_rejects_nan_and_infinity_literals(literal):
    text = json.dumps(BODY).replace('"util": 0.166667', f'"util": {literal}')
    assert literal in text
    assert "finite" in rejected(frame(text.encode()), "body")


def test_decode_rejects_number_overflowing_to_infinity():
    text = json.dumps(BODY).replace('"price": 0.32', '"price": 1e999')
    assert "finite" in rejected(frame(text.encode()), "price")
    text = json.dumps(BODY).replace('"ts": 1732240042.015', '"ts": ' + "9" * 400)
    rejected(frame(text.encode()), "ts")


@pytest.mark.parametrize("field", ["gw", "epoch", "seq", "ts", "interval", "units", "util",
                                   "queue", "delay_ms", "price", "green", "services"])
def test_missing_required_field(field):
    body = {k: v for k, v in BODY.items() if k != field}
    assert "missing" in rejected(frame(body), field)


def test_unknown_field_is_rejected():
    msg = rejected(frame(dict(BODY, gpus=3)), "body")
    assert "unknown field" in msg and "'gpus'" in msg


def test_duplicate_keys_are_rejected_at_every_level():
    text = json.dumps(BODY)
    rejected(frame(text.replace('"seq": 42', '"seq": 42, "seq": 43').encode()), "seq")
    rejected(frame(text.replace('"cann": [64, 64]', '"cann": [64, 64], "cuda": [1, 1]')
                   .encode()), "cuda")


@pytest.mark.parametrize("body", [b"[]", b"42", b'"x"', b"null", b"{", b"{}x", b"\xff\xfe{}",
                                  b"\xef\xbb\xbf{}", b"[" * 500 + b"]" * 500, b" "])
def test_body_that_is_not_a_json_object(body):
    rejected(frame(body), "body")


# -- framing --------------------------------------------------------------------------------

def test_truncated_header():
    msg = encode_advert(advert())
    for n in range(8):
        rejected(msg[:n], "header")


def test_wrong_magic_version_and_flags():
    body = json.dumps(BODY).encode()
    rejected(frame(body, magic=b"CATZ"), "magic")
    rejected(frame(body, magic=b"\x00\x00\x00\x00"), "magic")
    for v in (0, 2, 255):
        assert "not supported" in rejected(frame(body, version=v), "version")
    for f in (2, 0x80, 0xFF):
        rejected(frame(body, flags=f), "flags")


def test_body_len_mismatch_and_limits():
    body = json.dumps(BODY).encode()
    assert "trailing" in rejected(frame(body, body_len=len(body) - 1), "body_len")
    assert "truncated" in rejected(frame(body, body_len=len(body) + 1), "body_len")
    assert "trailing" in rejected(frame(body) + b"\x00", "body_len")
    rejected(frame(b"", body_len=0), "body_len")
    big = b"{" + b" " * MAX_BODY + b"}"
    assert "MAX_BODY" in rejected(frame(big), "body_len")
    rejected(frame(body, body_len=65535), "body_len")


def test_encoder_refuses_oversize_body():
    services = tuple(f"s{i:02d}-" + "x" * 27 for i in range(32))
    with pytest.raises(AdvertError, match="^body: .* exceeds MAX_BODY"):
        encode_advert(advert(services=services))


def test_encoder_refuses_non_advert_and_bad_key():
    with pytest.raises(AdvertError, match="^advert"):
        encode_advert(BODY)  # type: ignore[arg-type]
    with pytest.raises(AdvertError, match="^key"):
        encode_advert(advert(), b"")
    with pytest.raises(AdvertError, match="^key"):
        encode_advert(advert(), "text-key")  # type: ignore[arg-type]


def test_payload_must_be_bytes():
    rejected("CATS", "payload")
    rejected(None, "payload")


# -- HMAC -----------------------------------------------------------------------------------

def test_hmac_missing_with_require_auth():
    msg = encode_advert(advert())
    assert decode_advert(msg, KEY).authenticated is False  # key but no auth required
    assert "requires authentication" in rejected(msg, "hmac", key=KEY, require_auth=True)


def test_hmac_wrong_key_or_altered_message():
    msg = encode_advert(advert(), KEY)
    rejected(msg, "hmac", key=b"another key")
    rejected(msg, "hmac", key=b"another key", require_auth=True)
    i = msg.index(b'"seq":42') + 7
    altered = msg[:i] + b"3" + msg[i + 1:]
    rejected(altered, "hmac", key=KEY)
    bad_mac = msg[:-1] + bytes([msg[-1] ^ 1])
    rejected(bad_mac, "hmac", key=KEY)


def test_hmac_present_but_no_key_is_accepted_unauthenticated():
    d = decode_advert(encode_advert(advert(), KEY))
    assert d.authenticated is False and d.gw == "zhongwei"


def test_hmac_truncated_or_flag_without_trailer():
    msg = encode_advert(advert(), KEY)
    rejected(msg[:-1], "body_len", key=KEY)
    rejected(frame(BODY, flags=1), "body_len", key=KEY)


def test_require_auth_without_key_is_an_error():
    rejected(encode_advert(advert(), KEY), "key", require_auth=True)
    rejected(encode_advert(advert()), "key", key=b"")


def test_unauthenticated_body_is_not_parsed_when_auth_required():
    # An invalid body: with require_auth the HMAC check fails first.
    assert "hmac" in rejected(frame(b"{not json"), "hmac", key=KEY, require_auth=True)
    # A valid HMAC over a valid frame whose body is bad: parsed, then rejected by field.
    rejected(signed(dict(BODY, util=2)), "util", key=KEY, require_auth=True)


# -- fuzzing --------------------------------------------------------------------------------

def _random_advert(rng: random.Random) -> Advert:
    kinds = rng.sample(["cuda", "cann", "rocm", "mlu", "tpu_v5", "npu", "x", "cpu"],
                       rng.randint(1, 8))
    units = {}
    for k in kinds:
        total = rng.randint(0, 1_000_000)
        units[k] = (total, rng.randint(0, total))
    return Advert(
        gw=rng.choice(["zhongwei", "guian", "a", "z-9_x"]), epoch=rng.randint(1, 2**63 - 1),
        seq=rng.randint(0, 2**63 - 1), ts=rng.uniform(1e-6, 2e9),
        interval=rng.uniform(0.05, 60), units=units, util=rng.random(),
        queue=rng.randint(0, 1_000_000), delay_ms=rng.uniform(0, 600_000),
        price=rng.uniform(0, 100), green=rng.random(),
        services=tuple(f"svc-{i}" for i in range(rng.randint(0, 12))),
        pue=rng.choice([None, rng.uniform(1, 5)]),
        operator=rng.choice([None, "", "China Mobile", "阿里云"]))


def test_random_valid_adverts_round_trip():
    rng = random.Random(7)
    for _ in range(500):
        a = _random_advert(rng)
        key = rng.choice([None, KEY])
        d = decode_advert(encode_advert(a, key), key, require_auth=key is not None)
        assert dataclasses.replace(d, authenticated=False) == a


def _decode_or_adverterror(data: bytes, **kw):
    try:
        return decode_advert(data, **kw)
    except AdvertError:
        return None  # anything else propagates and fails the test


def test_fuzz_random_bytes():
    rng = random.Random(1)
    accepted = 0
    for i in range(3000):
        n = rng.choice([rng.randint(0, 16), rng.randint(0, 1100)])
        data = bytes(rng.getrandbits(8) for _ in range(n))
        if i % 3 == 0 and n >= 4:
            data = MAGIC + bytes([1, rng.randint(0, 1)]) + data[6:]
        accepted += _decode_or_adverterror(data) is not None
        assert _decode_or_adverterror(data, key=KEY, require_auth=True) is None
    assert accepted == 0  # random bytes are never a valid advertisement


def _mutate(rng: random.Random, msg: bytes) -> bytes:
    b = bytearray(msg)
    op = rng.randrange(6)
    if op == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1:  # replace a byte with a JSON-significant one
        b[rng.randrange(len(b))] = ord(rng.choice('{}[]",:0123456789.-eEtrufalsn \\'))
    elif op == 2:  # delete a slice
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 8)]
    elif op == 3:  # insert bytes
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif op == 4:  # truncate
        del b[rng.randrange(len(b)):]
    else:  # mutate the body and fix body_len so the JSON parser sees it
        i = rng.randrange(8, len(b))
        b[i] = ord(rng.choice('{}[]",:0123456789.-eE \\x'))
        b[6:8] = struct.pack("!H", len(b) - 8)
    return bytes(b)


def test_fuzz_mutated_valid_messages():
    rng = random.Random(2)
    outcomes = {"accepted": 0, "rejected": 0}
    for _ in range(3000):
        plain = encode_advert(_random_advert(rng))
        bad = _mutate(rng, plain)
        d = _decode_or_adverterror(bad)
        outcomes["accepted" if d is not None else "rejected"] += 1
        if d is not None:  # whatever is accepted re-encodes to a valid message
            assert decode_advert(encode_advert(d)) == d
        keyed = encode_advert(_random_advert(rng), KEY)
        bad = _mutate(rng, keyed)
        if bad != keyed:  # with a key, every change is caught
            assert _decode_or_adverterror(bad, key=KEY, require_auth=True) is None
    assert outcomes["rejected"] > 2000 and outcomes["accepted"] > 0


def test_nan_in_body_cannot_sneak_through_any_field():
    for field in ("ts", "interval", "util", "delay_ms", "price", "green", "pue"):
        text = json.dumps(dict(BODY, **{field: 0.5})).replace(f'"{field}": 0.5',
                                                             f'"{field}": NaN')
        assert math.isnan(json.loads(text)[field])
        rejected(frame(text.encode()), "body")
