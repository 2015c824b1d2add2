"""Enumerations shared by the resident types."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Why the caller is asking. Every resident lookup declares one.")
class Purpose(Enum):
    WELFARE_ELIGIBILITY = strawberry.enum_value(
        "WELFARE_ELIGIBILITY", description="Deciding eligibility for a welfare benefit."
    )
    TAX_ADMINISTRATION = strawberry.enum_value(
        "TAX_ADMINISTRATION", description="Assessing or collecting taxes."
    )
    HEALTH_INSURANCE = strawberry.enum_value(
        "HEALTH_INSURANCE", description="Administering national health insurance."
    )
    PENSION_ADMINISTRATION = strawberry.enum_value(
        "PENSION_ADMINISTRATION", description="Administering the national pension."
    )
    MILITARY_ADMINISTRATION = strawberry.enum_value(
        "MILITARY_ADMINISTRATION", description="Administering military service duty."
    )
    CIVIL_PETITION = strawberry.enum_value(
        "CIVIL_PETITION", description="Handling a petition the resident filed themselves."
    )


@strawberry.enum(description="Sex as recorded in the resident registry.")
class Sex(Enum):
    MALE = strawberry.enum_value("MALE", description="Male.")
    FEMALE = strawberry.enum_value("FEMALE", description="Female.")


@strawberry.enum(description="Whether a registration is in force.")
class RegistrationStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Registered and living in Korea.")
    DECEASED = strawberry.enum_value("DECEASED", description="Death has been registered.")
    EMIGRATED = strawberry.enum_value("EMIGRATED", description="Moved abroad permanently.")


@strawberry.enum(description="A member's relationship to the head of the household.")
class Relationship(Enum):
    HEAD = strawberry.enum_value("HEAD", description="Head of the household.")
    SPOUSE = strawberry.enum_value("SPOUSE", description="Spouse of the head.")
    CHILD = strawberry.enum_value("CHILD", description="Child of the head.")
    PARENT = strawberry.enum_value("PARENT", description="Parent of the head.")
    SIBLING = strawberry.enum_value("SIBLING", description="Sibling of the head.")
    OTHER = strawberry.enum_value("OTHER", description="Any other member.")


@strawberry.enum(description="How a person is covered by national health insurance.")
class InsuredType(Enum):
    EMPLOYEE = strawberry.enum_value("EMPLOYEE", description="Insured through an employer.")
    SELF_EMPLOYED = strawberry.enum_value(
        "SELF_EMPLOYED", description="Regional subscriber paying on income and property."
    )
    DEPENDENT = strawberry.enum_value(
        "DEPENDENT", description="Covered as a dependent of an insured person."
    )


@strawberry.enum(description="How a person takes part in the national pension.")
class PensionSubscriberType(Enum):
    WORKPLACE = strawberry.enum_value("WORKPLACE", description="Contributes through work.")
    REGIONAL = strawberry.enum_value("REGIONAL", description="Contributes individually.")
    VOLUNTARY = strawberry.enum_value(
        "VOLUNTARY", description="Contributes voluntarily without an obligation."
    )
    RECIPIENT = strawberry.enum_value("RECIPIENT", description="Receives an old-age pension.")


@strawberry.enum(description="Where a person stands with military service duty.")
class MilitaryServiceStatus(Enum):
    NOT_APPLICABLE = strawberry.enum_value(
        "NOT_APPLICABLE", description="No duty applies (women, foreigners, minors)."
    )
    PENDING = strawberry.enum_value("PENDING", description="Liable but not yet enlisted.")
    SERVING = strawberry.enum_value("SERVING", description="On active duty now.")
    COMPLETED = strawberry.enum_value("COMPLETED", description="Service completed.")
    EXEMPT = strawberry.enum_value("EXEMPT", description="Exempted from service.")


@strawberry.enum(description="Branch of service.")
class MilitaryBranch(Enum):
    ARMY = strawberry.enum_value("ARMY", description="Republic of Korea Army.")
    NAVY = strawberry.enum_value("NAVY", description="Republic of Korea Navy.")
    AIR_FORCE = strawberry.enum_value("AIR_FORCE", description="Republic of Korea Air Force.")
    MARINES = strawberry.enum_value("MARINES", description="Republic of Korea Marine Corps.")
    SOCIAL_SERVICE = strawberry.enum_value(
        "SOCIAL_SERVICE", description="Alternative service as a social service agent."
    )
