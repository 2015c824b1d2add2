"""A gateway under the demo policy with two certificate keys: an older P-256 key kept for
verification and a current Ed25519 key that signs, both given by file reference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.certificate_keys import CertificateKeys, generate_key_file
from gateway.config import CertificatesConfig
from tests.access.conftest import demo_gateway, store
from tests.browser import browser
from tests.conftest import GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN

__all__ = ["browser", "store"]  # fixtures shared with tests/access and tests/browser.py


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(current Ed25519 key, older P-256 key), PEM files."""
    folder = tmp_path_factory.mktemp("certificate-keys")
    current, older = folder / "current.pem", folder / "older.pem"
    generate_key_file(current, "Ed25519")
    generate_key_file(older, "P-256")
    return current, older


@pytest.fixture(scope="session")
def cert_config(key_files: tuple[Path, Path]) -> CertificatesConfig:
    current, older = key_files
    # The suite issues many certificates to the same citizens within a day.
    return CertificatesConfig(
        keys=(f"file:{current}", f"file:{older}"), issuer="gw-test", issues_per_day=1000
    )


@pytest.fixture(scope="session")
def signing_keys(cert_config: CertificatesConfig) -> CertificateKeys:
    return CertificateKeys.from_references(cert_config.keys)


@pytest.fixture(scope="module")
async def gateway(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    cert_config: CertificatesConfig,
) -> AsyncIterator[GatewayClient]:
    async with demo_gateway(agency_db, http_agencies, store, certificates=cert_config) as gw:
        yield gw


def citizen(gateway: GatewayClient, rrn: str = HEAD_RRN) -> GatewayClient:
    return gateway.as_(token("citizen", rrn=rrn, sub=f"citizen-{rrn[-4:]}"))
