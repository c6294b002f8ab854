"""HTTPS between sites: the coordinator serves TLS and asks for client certificates (mutual
TLS); a partner verifies the coordinator's certificate by default, is refused without the
site's client certificate, and joins and works once both are in place. Certificates are made
here by a throwaway CA, for 127.0.0.1 only."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kahu.actions import federation as actions
from kahu.errors import KahuError
from tests.conftest import free_port
from tests.federation.sites import CLI, Site, seed, wait_for


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    folder: Path,
    stem: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca[1], hashes.SHA256())
    )
    _write(folder, stem, cert, key)


def _certificates(folder: Path) -> None:
    """ca.pem, server.pem/.key (for 127.0.0.1) and client.pem/.key, signed by the CA."""
    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kahu test CA"))
        .issuer_name(_name("kahu test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(folder, "ca", ca, key)
    _issue(folder, "server", (ca, key), ExtendedKeyUsageOID.SERVER_AUTH)
    _issue(folder, "client", (ca, key), ExtendedKeyUsageOID.CLIENT_AUTH)


@pytest.fixture
def tls_pair(tmp_path: Path) -> Iterator[tuple[Site, Site, Path]]:
    pki = tmp_path / "pki"
    _certificates(pki)
    port = free_port()
    a = Site(
        "a",
        tmp_path / "a",
        port,
        http={
            "tls_cert": pki / "server.pem",
            "tls_key": pki / "server.key",
            "tls_client_ca": pki / "ca.pem",
            "public_url": f"https://127.0.0.1:{port}",
        },
    )
    b = Site("b", tmp_path / "b", free_port())
    seed(a, 1)
    seed(b, 2)
    a.start()
    try:
        yield a, b, pki
    finally:
        a.stop()
        b.stop()


def test_mutual_tls_between_sites(tls_pair: tuple[Site, Site, Path]) -> None:
    a, b, pki = tls_pair
    url = f"https://127.0.0.1:{a.port}"

    def join(token: str) -> None:
        with b.open() as kahu:
            actions.join(kahu, CLI, url, token, "hub")

    def invite() -> str:
        with a.open() as kahu:
            return str(actions.invite(kahu, CLI, "b").result["token"])

    token = invite()
    with pytest.raises(KahuError, match=r"(?i)certificate"):  # verified against the system's CAs
        join(token)
    b.federation = {"ca_file": pki / "ca.pem"}
    with pytest.raises(KahuError, match=url):  # it asks for a client certificate: none here
        join(token)
    with b.open() as kahu:
        assert kahu.peers.all() == []
    b.federation = {
        "ca_file": pki / "ca.pem",
        "client_cert": pki / "client.pem",
        "client_key": pki / "client.key",
    }
    join(token)  # the token was not used up by the refused attempts

    with b.open() as kahu:
        actions.allow(
            kahu, CLI, "hub", "cohort-statistics", datasets=["b-cohort"], changes={"mode": "auto"}
        )
    b.start()  # its agent polls over mutual TLS
    with a.open() as kahu:
        run_id = actions.launch(kahu, CLI, "cohort-statistics", [("b", "b-cohort")], {}).result[
            "id"
        ]
        wait_for("the run", lambda: kahu.fed_runs.status(run_id)["state"] in ("done", "failed"))
        status = kahu.fed_runs.status(run_id)
    assert status["state"] == "done", status
    assert status["sites"][0]["outputs"][0]["name"] == "statistics"


def test_tls_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from kahu.settings import HttpSettings

    with pytest.raises(ValidationError, match="need tls_cert"):
        HttpSettings(tls_key=tmp_path / "server.key")
    with pytest.raises(ValidationError, match="need tls_cert"):
        HttpSettings(tls_client_ca=tmp_path / "ca.pem")
