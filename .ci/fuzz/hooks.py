"""Schemathesis hooks for .ci/fuzz.sh.

openapi.yaml states every rule of a batch that JSON Schema can state. A few it cannot, and
the document says them in words instead:

- occurred_at, on the server's clock after the sent_at correction, is at most an hour in
  the future and not before 2000 (it depends on the time of receipt);
- event ids are unique within a batch, and not the nil UUID;
- a custom event's properties are at most 8 KiB serialized, 8 levels deep, with no NUL;
- a country code is an assigned one (the pattern admits every two capital letters).

A schema-valid batch refused only for those (a 422 whose every error gives one of these
reasons) is not a disagreement between the document and the server, so its
"schema-valid request rejected" failure is dropped. Any other reason, or any other
failure, stays a failure.
"""

import re

import schemathesis

# The validator's words for the rules above (src/domain/batch.rs, src/domain/fields.rs),
# each with the field it is about.
_RULES = [
    (r"/events/\d+/occurred_at", r"is more than .* in the future \(after correcting the client clock by sent_at\)"),
    (r"/events/\d+/occurred_at", r"is before 2000-01-01 \(after correcting the client clock by sent_at\)"),
    (r"/events/\d+/event_id", r"repeats the event_id of event \d+: each event needs its own"),
    (r"/events/\d+/event_id", r"must not be the nil UUID"),
    (r"/events/\d+/properties", r"must be at most \d+ bytes serialized"),
    (r"/events/\d+/properties", r"must be nested at most \d+ levels deep"),
    (r"/events/\d+/properties", r"must not contain NUL characters"),
    (r"/events/\d+/country", r"is not an assigned ISO 3166-1 alpha-2 code"),
]
UNSTATED_RULES = [(re.compile(f"^{field}$"), re.compile(reason)) for field, reason in _RULES]

# "Schema-valid request rejected" (positive_data_acceptance).
SCHEMA_VALID_REJECTED = "ST202"


def unstated(error: dict) -> bool:
    field, reason = error.get("field", ""), error.get("reason", "")
    return any(f.match(field) and r.search(reason) for f, r in UNSTATED_RULES)


def refused_only_for_unstated_rules(response) -> bool:
    if response.status_code != 422:
        return False
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return bool(errors) and all(unstated(e) for e in errors)


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keeps every failure but a valid-looking batch refused only for the rules above."""
    if getattr(failure, "code", None) != SCHEMA_VALID_REJECTED:
        return True
    return not refused_only_for_unstated_rules(response)
