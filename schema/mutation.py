"""The root Mutation type: citizens managing their consents and certificates."""

from __future__ import annotations

import strawberry

from resolvers import certificate, citizen
from schema.certificate import Certificate
from schema.consent import Consent


@strawberry.type(description="Change what the gateway may disclose.")
class Mutation:
    grant_consent: Consent = strawberry.field(
        resolver=citizen.grant_consent,
        description=(
            "As a citizen, let one agency read your agency data for one purpose, for some days."
        ),
    )
    revoke_consent: Consent = strawberry.field(
        resolver=citizen.revoke_consent,
        description="As a citizen, withdraw a consent you gave; it stops at once.",
    )
    issue_certificate: Certificate = strawberry.field(
        resolver=certificate.issue_certificate,
        description=(
            "As a citizen, have the gateway sign a certificate about yourself (the token's "
            "rrn claim), to show where a paper certificate is asked for. Audited."
        ),
    )
    revoke_certificate: Certificate = strawberry.field(
        resolver=certificate.revoke_certificate,
        description=(
            "As a citizen, revoke a certificate you were issued: verifiers checking the "
            "revocation list refuse it from now on."
        ),
    )
