"""Signing and verifying one certificate: median microseconds over 5 runs of 500.

.venv/bin/python -m bench.certificates
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from gateway.certificate_keys import CertificateKeys, generate_key_file
from gateway.certificates import certificate_claims, sign, verify

BODY = {
    "holder": {"name": "Kim Min-jun", "birthDate": "1994-08-12", "rrn": "940812-1******"},
    "insurance": {"enrolled": True, "insuredType": "EMPLOYEE", "enrolledOn": "2018-01-01"},
}
RUNS, EACH = 5, 500


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for curve in ("Ed25519", "P-256"):
            path = Path(folder) / f"{curve}.pem"
            generate_key_file(path, curve)
            keys = CertificateKeys.from_references([f"file:{path}"])
            key, jwks = keys.keys[0], keys.jwks()
            now = dt.datetime.now(dt.UTC)
            claims = certificate_claims(
                issuer="bench", certificate_id="c-1", kind="HEALTH_INSURANCE", issued_at=now,
                expires_at=now + dt.timedelta(days=90), body=BODY,
            )  # fmt: skip
            token = sign(key, claims)
            signing, verifying = [], []
            for _ in range(RUNS):
                start = time.perf_counter()
                for _ in range(EACH):
                    sign(key, claims)
                signing.append((time.perf_counter() - start) / EACH * 1e6)
                start = time.perf_counter()
                for _ in range(EACH):
                    verify(token, jwks)
                verifying.append((time.perf_counter() - start) / EACH * 1e6)
            print(
                f"{curve}: sign {statistics.median(signing):.0f} us, verify "
                f"{statistics.median(verifying):.0f} us (median of {RUNS}x{EACH}), "
                f"token {len(token)} characters"
            )


if __name__ == "__main__":
    main()
