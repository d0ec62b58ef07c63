"""Standard Webhooks signature: the published vector and every way a delivery can be forged."""

from __future__ import annotations

import pytest

from app.ingest.signature import SignatureError, new_secret, sign, verify

# The example from the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _verify(**over: object) -> None:
    args: dict[str, object] = {
        "msg_id": MSG_ID,
        "timestamp": str(TS),
        "signature_header": EXPECTED,
        "body": BODY,
        "now": TS,
    }
    args.update(over)
    secrets = args.pop("secrets", [SECRET])
    verify(secrets, **args)  # type: ignore[arg-type]


def test_known_vector():
    assert sign(SECRET, MSG_ID, TS, BODY) == EXPECTED
    _verify()


@pytest.mark.parametrize(
    "over",
    [
        {"body": b'{"test": 2432232315}'},
        {"msg_id": "msg_other"},
        {"timestamp": str(TS + 1), "now": TS + 1},
        {"secrets": [new_secret()]},
        {"signature_header": "v1,AAAA"},
        {"signature_header": "v2," + EXPECTED.split(",", 1)[1]},
        {"signature_header": None},
        {"msg_id": None},
        {"timestamp": "yesterday"},
    ],
)
def test_forgeries_rejected(over: dict[str, object]):
    with pytest.raises(SignatureError):
        _verify(**over)


def test_tolerance_is_five_minutes_both_ways():
    _verify(now=TS + 300)
    _verify(now=TS - 300)
    with pytest.raises(SignatureError):
        _verify(now=TS + 301)
    with pytest.raises(SignatureError):
        _verify(now=TS - 301)


def test_rotation_several_signatures_and_secrets():
    new = new_secret()
    both = f"{sign(new, MSG_ID, TS, BODY)} {EXPECTED}"
    _verify(signature_header=both, secrets=[new])
    _verify(signature_header=EXPECTED, secrets=[SECRET, new])
    with pytest.raises(SignatureError):
        _verify(signature_header=sign(new, MSG_ID, TS, BODY), secrets=[SECRET])
