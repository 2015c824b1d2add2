"""GraphiQL in a real headless chromium with the internet out of reach (tests/browser.py):
the page loads from the gateway alone, a role is picked, its example runs and shows data,
and the docs pane shows Resident and who may read its fields."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

from playwright.sync_api import ConsoleMessage, Page, expect

from gateway.demo.embedded import DEMO_ROLES
from gateway.graphiql import DemoRole
from tests.access.conftest import DEMO
from tests.browser import browser_page  # noqa: F401
from tests.conftest import ScratchDatabase, make_config, token
from tests.data import HEAD_RRN
from tests.gateway.test_http_audit import serving

TIMEOUT_MS = 30_000  # generous: a loaded 2-core machine, not a performance claim


def demo_roles() -> list[DemoRole]:
    return [
        DemoRole(
            role,
            f"the demo's {role}",
            token(role, agency=agency, rrn=HEAD_RRN if role == "citizen" else None),
        )
        for role, agency in DEMO_ROLES.items()
    ]


@contextlib.contextmanager
def gateway(
    agency_db: ScratchDatabase, urls: dict[str, str], demo: list[DemoRole] | None = None
) -> Iterator[str]:
    config = make_config(agency_db.dsn, urls, policy=DEMO)
    if demo is not None:
        with serving(config, demo_roles=demo, sample_rrn=HEAD_RRN) as url:
            yield url
    else:
        with serving(config) as url:
            yield url


EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


def editor_text(page: Page, selector: str) -> str:
    """An editor's whole text (CodeMirror puts only the visible lines in the DOM)."""
    text: str = page.evaluate(f"() => document.querySelector({selector!r}).CodeMirror.getValue()")
    return text


def watch_console(page: Page) -> list[str]:
    """Script errors and Content-Security-Policy violations the page logs."""
    problems: list[str] = []

    def record(message: ConsoleMessage) -> None:
        # A refused token is answered 401, which the browser logs: expected, not a problem.
        if message.type == "error" and "status of 401" not in message.text:
            problems.append(message.text)

    page.on("console", record)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def test_demo_role_picker_runs_the_sample_and_documents_the_schema(
    browser_page: Page,  # noqa: F811
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
) -> None:
    page = browser_page
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch_console(page)
    roles = demo_roles()
    with gateway(agency_db, http_agencies, roles) as url:
        page.goto(f"{url}/graphql")
        expect(page).to_have_title("Resident Gateway (demo)")
        expect(page.get_by_role("status")).to_contain_text("No token")

        page.get_by_label("Role").select_option("welfare_officer")
        expect(page.get_by_role("status")).to_contain_text("Roles: welfare_officer")
        query = page.locator(".graphiql-query-editor")
        expect(query).to_contain_text("ResidentForWelfareEligibility")
        expect(page.locator(".graphiql-editor-tool")).to_contain_text(HEAD_RRN)

        page.locator(".graphiql-execute-button").click()
        expect(page.locator(".graphiql-response")).to_contain_text("Kim Min-jun")
        result = json.loads(editor_text(page, RESPONSE))
        resident = result["data"]["resident"]
        assert resident["name"] == "Kim Min-jun"
        assert resident["address"]["street"] == "12 Teheran-ro"
        assert resident["household"]["size"] == 20
        # Taxes and pension need the resident's consent, which this one has not given.
        codes = {e["path"][-1]: e["extensions"]["code"] for e in result["errors"]}
        assert codes == {"taxes": "CONSENT_REQUIRED", "pension": "CONSENT_REQUIRED"}

        page.get_by_label("Show Documentation Explorer").click()
        docs = page.locator(".graphiql-doc-explorer")
        expect(docs).to_contain_text("Query")
        docs.get_by_text("Query", exact=True).click()
        expect(docs).to_contain_text("Resident")
        docs.locator(".graphiql-doc-explorer-type-name", has_text="Resident").first.click()
        expect(docs.locator(".graphiql-doc-explorer-title")).to_have_text("Resident")
        # A field's own page shows its whole description, the policy's access line included.
        docs.locator(".graphiql-doc-explorer-field-name", has_text="taxes").first.click()
        expect(docs.locator(".graphiql-doc-explorer-title")).to_have_text("taxes")
        expect(
            docs.get_by_text("welfare_officer for WELFARE_ELIGIBILITY (consent)", exact=False)
        ).to_be_visible()

        stored = page.evaluate(
            "() => [JSON.stringify(localStorage), JSON.stringify(sessionStorage)]"
        )

        # Another role: the unedited example gives way to that role's; the Example list
        # opens the others.
        page.get_by_label("Role").select_option("citizen")
        expect(query).to_contain_text("query Me")
        page.get_by_label("Example").select_option(label="myConsents")
        expect(query).to_contain_text("query MyConsents")
    welfare = next(d.token for d in roles if d.role == "welfare_officer")
    assert welfare not in stored[0], "a token was written to localStorage"
    assert welfare in stored[1]
    assert not problems, problems


def test_production_page_asks_for_a_token_then_loads_the_schema(
    browser_page: Page,  # noqa: F811
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
) -> None:
    page = browser_page
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch_console(page)
    with gateway(agency_db, http_agencies) as url:
        page.goto(f"{url}/graphql")
        expect(page).to_have_title("Resident Gateway")
        assert page.get_by_label("Role").count() == 0  # no demo tokens outside the demo
        assert "eyJ" not in page.content()

        page.get_by_label("Bearer token").fill("not-a-token")
        page.get_by_role("button", name="Use token").click()
        expect(page.get_by_role("status")).to_contain_text("refused this token")

        tax = token("tax_officer", agency="nts")
        page.get_by_label("Bearer token").fill(f"Bearer {tax}")
        page.get_by_role("button", name="Use token").click()
        expect(page.get_by_role("status")).to_contain_text("Roles: tax_officer")
        expect(page.locator(".graphiql-query-editor")).to_contain_text(
            "ResidentForTaxAdministration"
        )
        page.get_by_label("Show Documentation Explorer").click()
        docs = page.locator(".graphiql-doc-explorer")
        docs.get_by_text("Query", exact=True).click()
        expect(docs).to_contain_text("Resident")

        # A query of one's own is not replaced by the next token's example.
        own = "{ residents(rrns: [], purpose: PENSION_ADMINISTRATION) { name } }"
        page.evaluate(f"() => document.querySelector({EDITOR!r}).CodeMirror.setValue({own!r})")
        page.get_by_label("Bearer token").fill(token("pension_officer", agency="nps"))
        page.get_by_role("button", name="Use token").click()
        expect(page.get_by_label("Example")).to_contain_text("resident for PENSION_ADMINISTRATION")
        expect(page.locator("html")).to_have_attribute("data-gateway-example", re.compile(":kept$"))
        assert editor_text(page, EDITOR) == own
        stored = page.evaluate("() => JSON.stringify(localStorage)")
    assert tax not in stored
    assert not problems, problems
