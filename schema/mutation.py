"""The root Mutation type: citizens managing their consents."""

from __future__ import annotations

import strawberry

from resolvers import citizen
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
