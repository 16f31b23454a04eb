"""Throwaway certificates for running the fake WeChat Pay with TLS in tests: a CA, a
server certificate for 127.0.0.1 and a merchant (client) certificate."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey,
           cert: x509.Certificate) -> tuple[str, str]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def make_certificates(directory: Path) -> dict[str, str]:
    # Valid for decades either side: TLS judges validity on the wall clock, which a test
    # run may fake (CI runs some tests under faketime).
    not_before, not_after = datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, tzinfo=UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fake wechat ca"))
          .issuer_name(_name("fake wechat ca")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": _write(directory, "ca", ca_key, ca)[0]}

    def issue(stem: str, common_name: str, server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common_name))
                   .issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before)
                   .not_valid_after(not_after))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        paths[f"{stem}_cert"], paths[f"{stem}_key"] = _write(
            directory, stem, key, builder.sign(ca_key, hashes.SHA256()))

    issue("server", "127.0.0.1", server=True)
    issue("merchant", "1900000109", server=False)
    return paths


def server_context(paths: dict[str, str]) -> ssl.SSLContext:
    """TLS for the fake: client certificates are checked against the CA when sent; the
    fake itself refuses secapi calls that came without one."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(paths["server_cert"], paths["server_key"])
    context.load_verify_locations(paths["ca"])
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
