"""A private CA made in the test, and a small agency plus an OAuth2 token endpoint served
over real TLS on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path, password: str | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


class CA:
    """A certificate authority of the test's own, writing PEM files under ``directory``."""

    def __init__(self, directory: Path, name: str = "Test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.name = _name(name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.pem = directory / f"{name.replace(' ', '-').lower()}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common: str, *, server: bool, password: str | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{common}.pem", self.directory / f"{common}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key, password)
        return issued


@dataclass
class Stub:
    """What the stub agency and token endpoint saw, and how they behave."""

    token_fetches: int = 0
    token_forms: list[dict[str, str]] = field(default_factory=list)
    token_basic: list[str] = field(default_factory=list)
    token_status: int = 200  # anything else: the endpoint fails
    expires_in: Any = 3600
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    always_401: bool = False
    #: None: any bearer token the endpoint issued (or none when no token was ever issued);
    #: else the exact Authorization header required.
    required_header: tuple[str, str] | None = None
    batches: list[dict[str, str]] = field(default_factory=list)
    echo_secret: str = ""  # a careless token endpoint that quotes what it was sent

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def stub_app(stub: Stub) -> Starlette:
    def allowed(request: Request) -> bool:
        if stub.always_401:
            return False
        if stub.required_header is not None:
            name, value = stub.required_header
            return request.headers.get(name) == value
        if not stub.issued:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return given in stub.issued and given not in stub.revoked

    async def batch(request: Request) -> Response:
        stub.batches.append(dict(request.headers))
        if not allowed(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        return JSONResponse({"records": [None for _ in body["keys"]]})

    async def healthz(request: Request) -> Response:
        if not allowed(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"status": "ok"})

    async def token(request: Request) -> Response:
        stub.token_fetches += 1
        form = dict(parse_qsl((await request.body()).decode()))
        stub.token_forms.append(form)
        stub.token_basic.append(request.headers.get("authorization", ""))
        if stub.token_status != 200:
            text = f"invalid client {stub.echo_secret}"
            return JSONResponse({"error": text}, status_code=stub.token_status)
        issued = f"tok-{secrets.token_hex(8)}"
        stub.issued.append(issued)
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": stub.expires_in}
        )

    return Starlette(
        routes=[
            Route("/v1/{dataset}:batch", batch, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/token", token, methods=["POST"]),
        ]
    )


@contextmanager
def serve(app: Any, *, tls: Issued | None = None, client_ca: Path | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread; yields its base URL (https with ``tls``;
    client certificates signed by ``client_ca`` required when given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    if client_ca is not None:
        options |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app, log_level="critical", access_log=False, lifespan="off", ws="none", http="h11",
        **options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stub server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
