"""``problem_document``: the one maker of both services' problem bodies."""

from __future__ import annotations

from pact_schema.problem import Problem, problem_document, problem_type


def test_the_five_members_in_order_with_the_status_phrase_as_default_title() -> None:
    document = problem_document(413, "PAYLOAD_TOO_LARGE", "too big", type_base="urn:x:problem:")
    assert list(document.items()) == [
        ("type", "urn:x:problem:payload-too-large"),
        ("title", "Request Entity Too Large"),
        ("status", 413),
        ("detail", "too big"),
        ("code", "PAYLOAD_TOO_LARGE"),
    ]
    assert Problem.model_validate(document).model_dump() == document


def test_a_given_title_an_unknown_status_and_extension_members() -> None:
    document = problem_document(
        402,
        "INSUFFICIENT_ESCROW",
        "0.00008 needed",
        type_base="https://pact.dev/problems/",
        title="Escrow could not be locked",
        extra={"settlement_id": "st_1"},
    )
    assert document["title"] == "Escrow could not be locked"
    assert document["settlement_id"] == "st_1"
    assert problem_document(599, "ODD", "d", type_base="b/")["title"] == "Error"
    assert problem_type("https://pact.dev/problems/", "NOT_READY") == (
        "https://pact.dev/problems/not-ready"
    )
